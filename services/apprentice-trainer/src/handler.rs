//! The stage handler: each accepted-examples shard joins the training index in shared state,
//! where the training loop finds it.

use async_trait::async_trait;
use suti_factory::artifacts::key;
use suti_messages::ExamplesAcceptedV1;
use suti_stage::{HandleContext, Handler, HandlerError, Outcome};
use tracing::info;

/// State set of the shard keys in the training index.
pub const INDEX_SET: &str = "apprentice:index";
/// State counter of the examples indexed.
pub const INDEXED_EXAMPLES: &str = "apprentice:indexed_examples";

/// Adds each accepted shard to the training index.
pub struct IndexHandler;

#[async_trait]
impl Handler for IndexHandler {
    type Input = ExamplesAcceptedV1;

    async fn handle(
        &self,
        input: ExamplesAcceptedV1,
        ctx: &HandleContext,
    ) -> Result<Outcome, HandlerError> {
        key(&input.shard_key)?;
        if ctx.state.set_add(INDEX_SET, &input.shard_key).await? {
            ctx.state
                .incr(INDEXED_EXAMPLES, i64::from(input.accepted))
                .await?;
            info!(shard = %input.shard_key, examples = input.accepted, "shard indexed");
        }
        Ok(Outcome::none())
    }
}
