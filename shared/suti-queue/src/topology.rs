//! The pipeline's broker topology (architecture.md §4): exchanges, stage queues, dead-letter queues
//! and the release fan-out, all under an optional namespace so that test runs never collide.

use suti_messages::{
    ApprenticePublishedV1, CandidatesGeneratedV1, ClusterMinedV1, CrawlRequestV1,
    ExamplesAcceptedV1, ExpertTrainedV1, Message,
};

/// One stage queue and the routing patterns bound to it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSpec {
    /// Queue name (namespaced).
    pub name: String,
    /// Topic patterns bound to the queue (`cluster.mined.*`).
    pub patterns: Vec<String>,
}

impl QueueSpec {
    /// Name of this queue's dead-letter queue.
    pub fn dead_name(&self) -> String {
        format!("{}.dead", self.name)
    }
}

/// Names and routing of everything the pipeline declares on the broker.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    /// Namespace prefix (empty in production).
    pub namespace: String,
    /// Topic exchange every message is published to.
    pub exchange: String,
    /// Direct exchange dead letters go through, keyed by the source queue's name.
    pub dead_letter_exchange: String,
    /// Fan-out exchange for releases.
    pub fanout_exchange: String,
    /// Topic patterns routed to the fan-out exchange.
    pub fanout_patterns: Vec<String>,
    /// Stage queues.
    pub queues: Vec<QueueSpec>,
    /// Failed deliveries a message may have before it is dead-lettered (`x-delivery-limit`).
    pub delivery_limit: u32,
}

/// The topic pattern matching every version of a wire type: `cluster.mined.v1` → `cluster.mined.*`.
fn all_versions(type_name: &str) -> String {
    match type_name.rsplit_once('.') {
        Some((stem, _version)) => format!("{stem}.*"),
        None => type_name.to_string(),
    }
}

impl Topology {
    /// The pipeline topology: one queue per consumer stage, under `namespace` (empty for none).
    pub fn pipeline(namespace: &str, delivery_limit: u32) -> Self {
        let name = |base: &str| {
            if namespace.is_empty() {
                base.to_string()
            } else {
                format!("{namespace}.{base}")
            }
        };
        let queue = |base: &str, type_name: &str| QueueSpec {
            name: name(base),
            patterns: vec![all_versions(type_name)],
        };
        Self {
            namespace: namespace.to_string(),
            exchange: name("suti"),
            dead_letter_exchange: name("suti.dlx"),
            fanout_exchange: name("suti.releases"),
            fanout_patterns: vec![all_versions(ApprenticePublishedV1::TYPE)],
            queues: vec![
                queue("crawl.requests", CrawlRequestV1::TYPE),
                queue("clusters", ClusterMinedV1::TYPE),
                queue("experts", ExpertTrainedV1::TYPE),
                queue("candidates", CandidatesGeneratedV1::TYPE),
                queue("examples", ExamplesAcceptedV1::TYPE),
            ],
            delivery_limit,
        }
    }

    /// A topology with a single queue bound to `patterns`, for benchmarks and tests of one stage.
    pub fn single(namespace: &str, queue: &str, patterns: &[&str], delivery_limit: u32) -> Self {
        let mut topology = Self::pipeline(namespace, delivery_limit);
        topology.queues = vec![QueueSpec {
            name: topology.queue_name(queue),
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
        }];
        topology
    }

    /// The namespaced name of a stage queue (`clusters` → `ns.clusters`).
    pub fn queue_name(&self, base: &str) -> String {
        if self.namespace.is_empty() {
            base.to_string()
        } else {
            format!("{}.{base}", self.namespace)
        }
    }

    /// The stage queue a message type is routed to, if any.
    pub fn queue_for(&self, kind: &str) -> Option<&QueueSpec> {
        self.queues
            .iter()
            .find(|q| q.patterns.iter().any(|p| topic_matches(p, kind)))
    }

    /// Whether `kind` goes to the fan-out exchange.
    pub fn is_fanout(&self, kind: &str) -> bool {
        self.fanout_patterns.iter().any(|p| topic_matches(p, kind))
    }
}

/// AMQP topic matching: words separated by `.`, `*` matches one word, `#` zero or more.
pub fn topic_matches(pattern: &str, key: &str) -> bool {
    fn go(p: &[&str], k: &[&str]) -> bool {
        match (p.first(), k.first()) {
            (None, None) => true,
            (Some(&"#"), _) => go(&p[1..], k) || (!k.is_empty() && go(p, &k[1..])),
            (Some(&"*"), Some(_)) => go(&p[1..], &k[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &k[1..]),
            _ => false,
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = key.split('.').collect();
    go(&p, &k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_patterns_match_like_rabbitmq() {
        assert!(topic_matches("cluster.mined.*", "cluster.mined.v1"));
        assert!(topic_matches("cluster.mined.*", "cluster.mined.v2"));
        assert!(!topic_matches("cluster.mined.*", "cluster.mined"));
        assert!(!topic_matches("cluster.mined.*", "cluster.mined.v1.extra"));
        assert!(topic_matches("cluster.#", "cluster.mined.v1"));
        assert!(topic_matches("#", "anything.at.all"));
        assert!(!topic_matches("expert.trained.*", "cluster.mined.v1"));
    }

    #[test]
    fn every_message_type_has_exactly_one_destination() {
        let t = Topology::pipeline("ns", 5);
        for kind in suti_messages::ALL_TYPES {
            let queued = t
                .queues
                .iter()
                .filter(|q| q.patterns.iter().any(|p| topic_matches(p, kind)));
            let destinations = queued.count() + usize::from(t.is_fanout(kind));
            assert_eq!(destinations, 1, "{kind}");
        }
        assert_eq!(t.queue_for("cluster.mined.v1").unwrap().name, "ns.clusters");
        assert_eq!(
            t.queue_for("cluster.mined.v1").unwrap().dead_name(),
            "ns.clusters.dead"
        );
        assert!(t.is_fanout("apprentice.published.v1"));
        assert_eq!(Topology::pipeline("", 5).exchange, "suti");
    }
}
