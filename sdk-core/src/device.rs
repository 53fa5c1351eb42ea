//! What a device writes around each command it carries out: the entries of its command log
//! (what `onCommand` hands the page: `running`, then `done` or `failed`) and the reply body sent
//! back to the PC (for `storage` and `eval`, the page's inspector writes it: see
//! [`inspection_reply`]). The web layer runs the command and reads the page's cookie; what goes where
//! is decided here.

use super::Millis;
use super::json::Json;
use super::session::Command;
use tether_protocol::Kind;

/// A command's outcome: the result (as JSON) or why it failed, for a person.
pub type Outcome = Result<Json, String>;

/// One command's log entry, from `running` to `done` or `failed`.
pub struct CommandLog {
    entry: Json,
    started: Millis,
}

impl CommandLog {
    /// The `running` entry of a command that starts now.
    pub fn start(cmd: &Command, now: Millis) -> CommandLog {
        let entry = Json::obj([
            ("id", cmd.id.as_str().into()),
            ("type", cmd.kind.as_str().into()),
            ("from", cmd.from.as_str().into()),
            ("msg", cmd.msg.clone()),
            ("state", "running".into()),
        ]);
        CommandLog { entry, started: now }
    }

    /// The entry as it stands.
    pub fn entry(&self) -> &Json {
        &self.entry
    }

    /// Records the outcome and how long the command took.
    pub fn finish(&mut self, outcome: &Outcome, now: Millis) {
        match outcome {
            Ok(result) => {
                self.entry.set("state", "done".into());
                self.entry.set("result", result.clone());
            }
            Err(message) => self.fail(message.as_str().into()),
        }
        self.entry.set("ms", Json::uint(now.saturating_sub(self.started)));
    }

    /// The reply could not be sent (the session is closed, or its queue is full): the command
    /// failed as far as the PC is concerned, whatever it did on the phone.
    pub fn reply_failed(&mut self, why: &str) {
        self.fail(["the reply could not be sent: ", why].concat().into());
    }

    fn fail(&mut self, error: Json) {
        self.entry.set("state", "failed".into());
        self.entry.set("error", error);
    }
}

/// The reply to `cmd`: its kind (`postCb` or `callCb`) and body, `{method, result, error?}`,
/// plus the page's `cookie` and `appInfo` for a `post` (`cookie` is read only then).
pub fn reply(
    cmd: &Command,
    outcome: Outcome,
    cookie: impl FnOnce() -> Json,
    app_info: &Json,
) -> (Kind, Json) {
    let post = cmd.kind == Kind::Post;
    let method = if post { "post".into() } else { cmd.msg["method"].clone() };
    let mut body = Json::obj([("method", method)]);
    match outcome {
        Ok(result) => body.set("result", result),
        Err(message) => {
            body.set("result", Json::Null);
            body.set("error", Json::obj([("message", message.into())]));
        }
    }
    if post {
        body.set("cookie", cookie());
        body.set("appInfo", app_info.clone());
    }
    (cmd.kind.reply_kind().unwrap_or(Kind::PostCb), body)
}

/// The body of a `storage` or `eval` command's reply (`storageCb`, `evalCb`): what the page's
/// inspector answered (`Some(Ok(text))`, the text of a JSON object, `insp.handle`'s value), or
/// `inspect_off` when the page did not turn inspection on (`None`). Anything else the inspector
/// did (answered no JSON object, threw, never answered) is an `internal` error: the PC is
/// told, rather than left to time out.
pub fn inspection_reply(answer: Option<Outcome>) -> Json {
    let error = |code: &str, message: &str| {
        Json::obj([("error", Json::obj([("code", code.into()), ("message", message.into())]))])
    };
    match answer {
        None => error("inspect_off", "inspection is off on this page (connectDevice without inspect)"),
        Some(Ok(Json::Str(text))) => match Json::parse(&text) {
            Ok(body @ Json::Obj(_)) => body,
            _ => error("internal", "the page's inspector answered something other than a JSON object"),
        },
        Some(Ok(_)) => error("internal", "the page's inspector answered something other than JSON text"),
        Some(Err(message)) => error("internal", &message),
    }
}

/// How a `storage` or `eval` reply body shows in the page's command log: its `result`, or its
/// error as `code: message`.
pub fn inspection_outcome(body: &Json) -> Outcome {
    match body.get("error") {
        Some(e) => {
            Err([e["code"].as_str().unwrap_or("error"), ": ", e["message"].as_str().unwrap_or_default()]
                .concat())
        }
        None => Ok(body["result"].clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(kind: Kind, msg: &str) -> Command {
        Command { id: "pc1:7".into(), kind, from: "pc1".into(), msg: Json::parse(msg).unwrap() }
    }

    fn text(v: &Json) -> String {
        v.to_json()
    }

    #[test]
    fn a_post_reply_carries_the_cookie_and_app_info() {
        let cmd = command(Kind::Post, r#"{"url":"/api/a","method":"GET"}"#);
        let app = Json::obj([("app", "news".into())]);
        let (kind, body) = reply(&cmd, Ok(Json::obj([("code", Json::uint(0))])), || "uid=42".into(), &app);
        assert_eq!(kind, Kind::PostCb);
        assert_eq!(
            text(&body),
            r#"{"method":"post","result":{"code":0},"cookie":"uid=42","appInfo":{"app":"news"}}"#
        );
    }

    #[test]
    fn a_call_reply_names_the_method_and_never_reads_the_cookie() {
        let cmd = command(Kind::Call, r#"{"method":"getUser","params":[1]}"#);
        let (kind, body) =
            reply(&cmd, Ok(true.into()), || panic!("a call must not read the cookie"), &Json::Null);
        assert_eq!(kind, Kind::CallCb);
        assert_eq!(text(&body), r#"{"method":"getUser","result":true}"#);
    }

    #[test]
    fn a_failure_replies_null_with_the_message() {
        let cmd = command(Kind::Call, r#"{"method":"x"}"#);
        let (_, body) = reply(&cmd, Err("refused".into()), || Json::Null, &Json::Null);
        assert_eq!(text(&body), r#"{"method":"x","result":null,"error":{"message":"refused"}}"#);
        let post = command(Kind::Post, r#"{"url":"/a"}"#);
        let (_, body) = reply(&post, Err("no bridge".into()), || Json::Null, &Json::Null);
        assert_eq!(
            text(&body),
            r#"{"method":"post","result":null,"error":{"message":"no bridge"},"cookie":null,"appInfo":null}"#
        );
    }

    #[test]
    fn the_log_goes_from_running_to_done_with_its_time() {
        let cmd = command(Kind::Post, r#"{"url":"/a"}"#);
        let mut log = CommandLog::start(&cmd, 1_000);
        assert_eq!(
            text(log.entry()),
            r#"{"id":"pc1:7","type":"post","from":"pc1","msg":{"url":"/a"},"state":"running"}"#
        );
        log.finish(&Ok(Json::uint(5)), 1_250);
        assert_eq!(log.entry()["state"].as_str(), Some("done"));
        assert_eq!(log.entry()["result"].as_u64(), Some(5));
        assert_eq!(log.entry()["ms"].as_u64(), Some(250));
        assert!(log.entry().get("error").is_none());
    }

    #[test]
    fn a_failed_command_or_reply_is_logged_failed() {
        let cmd = command(Kind::Call, r#"{"method":"x"}"#);
        let mut log = CommandLog::start(&cmd, 1_000);
        log.finish(&Err("timed out".into()), 900);
        assert_eq!(log.entry()["state"].as_str(), Some("failed"));
        assert_eq!(log.entry()["error"].as_str(), Some("timed out"));
        assert_eq!(log.entry()["ms"].as_u64(), Some(0), "a clock going back counts as 0 ms");

        let mut log = CommandLog::start(&cmd, 1_000);
        log.finish(&Ok(Json::Null), 1_010);
        log.reply_failed("the session is closed");
        assert_eq!(log.entry()["state"].as_str(), Some("failed"));
        assert_eq!(log.entry()["error"].as_str(), Some("the reply could not be sent: the session is closed"));
    }

    #[test]
    fn an_inspection_reply_is_the_inspector_s_answer_or_says_why_not() {
        assert_eq!(
            text(&inspection_reply(None)),
            r#"{"error":{"code":"inspect_off","message":"inspection is off on this page (connectDevice without inspect)"}}"#
        );
        let answer = r#"{"error":{"code":"not_allowed","message":"eval is off on this phone"}}"#;
        let body = inspection_reply(Some(Ok(Json::str(answer))));
        assert_eq!(text(&body), answer);
        assert_eq!(inspection_outcome(&body), Err("not_allowed: eval is off on this phone".into()));
        let body = inspection_reply(Some(Ok(Json::str(r#"{"result":{"$":"undefined"}}"#))));
        assert_eq!(inspection_outcome(&body).unwrap().to_json(), r#"{"$":"undefined"}"#);
        for bad in [Ok(Json::str("[1]")), Ok(Json::str("{")), Ok(Json::uint(2)), Ok(Json::Null)] {
            assert_eq!(inspection_reply(Some(bad))["error"]["code"].as_str(), Some("internal"));
        }
        let body = inspection_reply(Some(Err("no answer within 5000 ms".into())));
        assert_eq!(body["error"]["message"].as_str(), Some("no answer within 5000 ms"));
    }
}
