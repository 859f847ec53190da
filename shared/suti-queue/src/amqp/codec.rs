//! How an envelope travels in AMQP: its metadata as message properties and headers, and back,
//! with the quorum queue's delivery count read on the way.

use std::collections::BTreeMap;

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, ShortString};

use crate::Envelope;

/// Persistent delivery mode: messages survive a broker restart.
const PERSISTENT: u8 = 2;

/// The AMQP properties an envelope travels in: its id, type, correlation and trace context, and
/// its headers, persistent.
pub(super) fn properties_of(envelope: &Envelope) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (key, value) in &envelope.headers {
        headers.insert(
            key.as_str().into(),
            AMQPValue::LongString(value.as_str().into()),
        );
    }
    if let Some(traceparent) = &envelope.traceparent {
        headers.insert(
            "traceparent".into(),
            AMQPValue::LongString(traceparent.as_str().into()),
        );
    }
    let mut props = BasicProperties::default()
        .with_message_id(envelope.message_id.as_str().into())
        .with_type(envelope.kind.as_str().into())
        .with_content_type(suti_messages::CONTENT_TYPE.into())
        .with_delivery_mode(PERSISTENT)
        .with_headers(headers);
    if let Some(correlation_id) = &envelope.correlation_id {
        props = props.with_correlation_id(correlation_id.as_str().into());
    }
    props
}

/// A text header as a string.
fn header_string(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

/// An integer header of any width.
fn header_int(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongLongInt(v) => Some(*v),
        _ => None,
    }
}

/// Rebuilds an envelope from a delivery's properties and body, and reads the quorum queue's
/// delivery count.
pub(super) fn envelope_of(props: &BasicProperties, body: &[u8]) -> (Envelope, u32) {
    let short = |s: &Option<ShortString>| s.as_ref().map(|s| s.as_str().to_string());
    let mut headers = BTreeMap::new();
    let mut traceparent = None;
    let mut delivery_count = 0;
    if let Some(table) = props.headers() {
        for (key, value) in table.inner() {
            match key.as_str() {
                "x-delivery-count" => {
                    delivery_count =
                        header_int(value).unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32;
                }
                "traceparent" => traceparent = header_string(value),
                other => {
                    if let Some(s) = header_string(value) {
                        headers.insert(other.to_string(), s);
                    }
                }
            }
        }
    }
    let envelope = Envelope {
        message_id: short(props.message_id()).unwrap_or_default(),
        kind: short(props.kind()).unwrap_or_default(),
        correlation_id: short(props.correlation_id()),
        traceparent,
        headers,
        body: body.to_vec(),
    };
    (envelope, delivery_count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_comes_back_from_its_properties() {
        let envelope = Envelope {
            message_id: "m-1".into(),
            kind: "cluster.mined.v1".into(),
            correlation_id: Some("run-7".into()),
            traceparent: Some("00-trace-span-01".into()),
            headers: BTreeMap::from([("x-suti-dead-reason".to_string(), "bad".to_string())]),
            body: b"payload".to_vec(),
        };
        let props = properties_of(&envelope);
        assert_eq!(props.delivery_mode(), &Some(PERSISTENT));
        assert_eq!(envelope_of(&props, &envelope.body), (envelope, 0));
    }

    #[test]
    fn the_delivery_count_is_read_from_any_integer_width_and_kept_out_of_the_headers() {
        let mut headers = FieldTable::default();
        headers.insert("x-delivery-count".into(), AMQPValue::LongLongInt(3));
        let props = BasicProperties::default().with_headers(headers);
        let (envelope, count) = envelope_of(&props, b"");
        assert_eq!(count, 3);
        assert!(envelope.headers.is_empty());
        let mut headers = FieldTable::default();
        headers.insert("x-delivery-count".into(), AMQPValue::ShortUInt(2));
        let props = BasicProperties::default().with_headers(headers);
        assert_eq!(envelope_of(&props, b"").1, 2);
    }
}
