//! A PC watching devices' pages (#18): an `inspect` batch as `onInspect` hands it to the page,
//! and what the Promise of `storage()` or `eval()` settles with.

use super::Millis;
use super::json::Json;
use super::session::{Reply, SdkError};
use tether_protocol::Kind;

/// One `inspect` batch from `device`, as the page's `onInspect` gets it, in order: first a
/// `{device, kind: "dropped", at, counts, bytes}` notice when the device's ring let events go
/// since its last batch (they were older than these), then each event as
/// `{device, kind, at, n, …}` (the event's `k` is `kind`). `now` stands in for `at` when the
/// batch has no event to take it from. Anything that is not an object is skipped.
pub fn events(device: &str, msg: &Json, now: Millis) -> Vec<Json> {
    let list = msg["events"].as_array().unwrap_or_default();
    let mut out = Vec::with_capacity(list.len() + 1);
    if msg["dropped"].is_object() {
        let at = list.first().and_then(|e| e.get("at")).cloned().unwrap_or_else(|| Json::uint(now));
        let bytes = msg.get("droppedBytes").cloned().unwrap_or_else(|| Json::uint(0));
        out.push(Json::obj([
            ("device", device.into()),
            ("kind", "dropped".into()),
            ("at", at),
            ("counts", msg["dropped"].clone()),
            ("bytes", bytes),
        ]));
    }
    for e in list {
        let Json::Obj(fields) = e else { continue };
        let mut o = vec![("device".to_owned(), Json::from(device))];
        for (k, v) in fields.iter().filter(|(k, _)| k != "device" && k != "kind") {
            o.push((if k == "k" { "kind" } else { k }.to_owned(), v.clone()));
        }
        out.push(Json::Obj(o));
    }
    out
}

/// What the Promise of a `storage` or `eval` request settles with, from the device's reply:
/// `{device, ms, local, session, cookie, cut?}` for `storage`, `{device, ms, result}` for
/// `eval`; or the device's `error` as a rejection (`not_allowed`, `eval_blocked`, `threw`,
/// `inspect_off`, `bad_frame`, …), with the thrown Value for `threw`.
pub fn settle(r: &Reply) -> Result<Json, (SdkError, Option<Json>)> {
    let err = &r.msg["error"];
    if !err.is_null() {
        let code = err["code"].as_str().unwrap_or("internal");
        let message = err["message"].as_str().unwrap_or("the device could not do it");
        return Err((SdkError::new(code, message), err.get("value").cloned()));
    }
    let mut out = Json::obj([("device", r.device.as_str().into()), ("ms", Json::uint(r.ms))]);
    match (r.kind, r.msg.get("result")) {
        (Kind::StorageCb, Some(Json::Obj(areas))) => {
            for (k, v) in areas {
                out.set(k, v.clone());
            }
        }
        (_, result) => out.set("result", result.cloned().unwrap_or_default()),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(s: &str) -> Json {
        Json::parse(s).unwrap()
    }

    #[test]
    fn a_batch_becomes_events_with_the_device_after_a_dropped_notice() {
        let msg = j(r#"{"events":[{"k":"console","at":7,"n":3,"level":"log","args":["a"]},5,
            {"k":"network","at":8,"n":4,"device":"forged","id":"r1"}],"dropped":{"console":2},"droppedBytes":90}"#);
        let got: Vec<String> = events("d-1", &msg, 99).iter().map(Json::to_json).collect();
        assert_eq!(
            got,
            [
                r#"{"device":"d-1","kind":"dropped","at":7,"counts":{"console":2},"bytes":90}"#,
                r#"{"device":"d-1","kind":"console","at":7,"n":3,"level":"log","args":["a"]}"#,
                r#"{"device":"d-1","kind":"network","at":8,"n":4,"id":"r1"}"#,
            ]
        );
        // No losses: no notice; no events: nothing.
        assert_eq!(events("d-1", &j(r#"{"events":[{"k":"page","at":1,"n":1}]}"#), 5).len(), 1);
        assert!(events("d-1", &j(r#"{"events":{}}"#), 5).is_empty());
        let only = events("d-1", &j(r#"{"events":[],"dropped":{"page":1}}"#), 5);
        assert_eq!(
            only[0].to_json(),
            r#"{"device":"d-1","kind":"dropped","at":5,"counts":{"page":1},"bytes":0}"#
        );
    }

    fn reply(kind: Kind, msg: &str) -> Reply {
        Reply { id: "4".into(), kind, device: "d-1".into(), msg: j(msg), ms: 12 }
    }

    #[test]
    fn replies_settle_with_their_result_or_the_device_s_code() {
        let r =
            reply(Kind::StorageCb, r#"{"result":{"local":[["a","1"]],"session":[],"cookie":[],"cut":true}}"#);
        assert_eq!(
            settle(&r).unwrap().to_json(),
            r#"{"device":"d-1","ms":12,"local":[["a","1"]],"session":[],"cookie":[],"cut":true}"#
        );
        let r = reply(Kind::EvalCb, r#"{"result":{"$":"undefined"}}"#);
        assert_eq!(settle(&r).unwrap().to_json(), r#"{"device":"d-1","ms":12,"result":{"$":"undefined"}}"#);
        let r = reply(Kind::EvalCb, r#"{}"#);
        assert_eq!(settle(&r).unwrap().to_json(), r#"{"device":"d-1","ms":12,"result":null}"#);

        let r = reply(
            Kind::EvalCb,
            r#"{"error":{"code":"threw","message":"x is not defined","value":{"$":"error"}}}"#,
        );
        let (e, value) = settle(&r).unwrap_err();
        assert_eq!((e.code.as_str(), e.message.as_str()), ("threw", "x is not defined"));
        assert_eq!(value.unwrap().to_json(), r#"{"$":"error"}"#);
        let r = reply(Kind::StorageCb, r#"{"error":{"code":"not_allowed","message":"no"}}"#);
        assert_eq!(settle(&r).unwrap_err(), (SdkError::new("not_allowed", "no"), None));
        let r = reply(Kind::StorageCb, r#"{"error":"broken"}"#);
        assert_eq!(settle(&r).unwrap_err().0.code, "internal");
    }
}
