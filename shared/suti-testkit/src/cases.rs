//! Backend suites as named tests: [`backend_cases!`](crate::backend_cases) turns a list of checks
//! and a list of backends into one test per pair, so that a failure names both the check and the
//! backend it failed on.

/// Expands into a module per backend holding one test per check: `amqp::prefetch_limits_unacked`,
/// `in_process::prefetch_limits_unacked`, and so on. The test names keep the backend's name, so
/// nextest filters on it (`test(/amqp/)`) still select the tests that need that backend.
///
/// For every backend `b` the calling file defines `async fn b() -> Fixture`, for every check `c`
/// an `async fn c(fixture: &Fixture)`, and `Fixture` has an `async fn finish(self)` that checks
/// and clears what a check leaves behind. A check left out of the list is dead code, which the
/// workspace's lints refuse, so none can be forgotten.
///
/// ```ignore
/// suti_testkit::backend_cases! {
///     #[tokio::test]
///     backends: [in_process, amqp],
///     checks: [routes_by_type, prefetch_limits_unacked],
/// }
/// ```
#[macro_export]
macro_rules! backend_cases {
    (
        #[$test:meta]
        backends: [$($backend:ident),+ $(,)?],
        checks: $checks:tt $(,)?
    ) => {
        $( $crate::backend_cases!(@backend #[$test] $backend $checks); )+
    };
    (@backend #[$test:meta] $backend:ident [$($check:ident),+ $(,)?]) => {
        mod $backend {
            $(
                #[$test]
                async fn $check() {
                    let fixture = super::$backend().await;
                    super::$check(&fixture).await;
                    fixture.finish().await;
                }
            )+
        }
    };
}
