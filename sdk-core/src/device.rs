//! What a device writes around each command it carries out: the entries of its command log
//! (what `onCommand` hands the page: `running`, then `done` or `failed`) and the reply body sent
//! back to the PC. The web layer runs the command and reads the page's cookie; what goes where
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
}
