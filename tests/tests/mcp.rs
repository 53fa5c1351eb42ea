//! `tether mcp` (#19): an MCP conversation with the real binary over its stdio, against a real
//! relay and a scripted device: initialize, tools/list (the four tools and their schemas),
//! tools/call of each tool, a device's error and the relay's refusals as tool errors, the
//! cookies withheld unless `--show-cookies`, and a clean exit when the client closes stdin.

use serde_json::{Value, json};
use std::process::Stdio;
use tether_tests::{Client, Relay, WAIT, built_binary, reply_to};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

const SECRET: &str = "mcp-secret-0123456789abcdef";

/// One `tether mcp` process and its side of the conversation.
struct Mcp {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    next_id: u64,
}

impl Mcp {
    fn start(relay: &str, room: &str, secret: &str, extra: &[&str]) -> Mcp {
        let mut child = tokio::process::Command::new(built_binary("tether", "tether-cli"))
            .env_remove("TETHER_RELAY")
            .env_remove("TETHER_ROOM")
            .env_remove("TETHER_SECRET")
            .args(["--relay", relay, "--room", room, "--secret", secret, "mcp"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("tether mcp starts");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Mcp { child, stdin, stdout, next_id: 1 }
    }

    async fn write(&mut self, msg: Value) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(format!("{msg}\n").as_bytes()).await.unwrap();
        stdin.flush().await.unwrap();
    }

    /// Sends a request; returns its id (answered by [`Mcp::answer`]).
    async fn send(&mut self, method: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.write(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await;
        id
    }

    /// The response to request `id` (every line on stdout must be JSON-RPC).
    async fn answer(&mut self, id: u64) -> Value {
        loop {
            let line = tokio::time::timeout(WAIT, self.stdout.next_line())
                .await
                .expect("an answer in time")
                .unwrap()
                .expect("stdout open");
            let msg: Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("stdout holds non-JSON ({e}): {line}"));
            assert_eq!(msg["jsonrpc"], "2.0", "{msg}");
            if msg["id"] == id {
                return msg;
            }
        }
    }

    async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.send(method, params).await;
        self.answer(id).await
    }

    /// `tools/call`: its result (a tool's outcome is never a JSON-RPC error).
    async fn call(&mut self, name: &str, args: Value) -> Value {
        let id = self.send("tools/call", json!({"name": name, "arguments": args})).await;
        self.result(id).await
    }

    async fn result(&mut self, id: u64) -> Value {
        let msg = self.answer(id).await;
        assert!(msg.get("error").is_none(), "a JSON-RPC error: {msg}");
        msg["result"].clone()
    }

    async fn initialize(&mut self) -> Value {
        let init = self
            .request(
                "initialize",
                json!({"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "tether-tests", "version": "1"}}),
            )
            .await;
        self.write(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
        init
    }

    /// Closes stdin, as a client that is done does; the server exits 0.
    async fn finish(mut self) {
        drop(self.stdin.take());
        let status = tokio::time::timeout(WAIT, self.child.wait()).await.expect("exits in time").unwrap();
        assert!(status.success(), "{status}");
    }
}

async fn device(relay: &Relay, room: &str, name: &str) -> Client {
    let mut d = relay.join(room, "device", SECRET).await;
    d.send(json!({"type": "hello", "msg": {"name": name}})).await;
    d
}

#[tokio::test]
async fn an_agent_lists_the_tools_and_drives_a_device_through_them() {
    let relay = Relay::start().await;
    let mut dev = device(&relay, "agent", "Pixel 8").await;
    let mut mcp = Mcp::start(&format!("http://{}", relay.addr), "agent", SECRET, &[]);

    let init = mcp.initialize().await;
    assert_eq!(init["result"]["serverInfo"]["name"], "tether", "{init}");
    assert!(init["result"]["capabilities"]["tools"].is_object(), "{init}");
    assert!(init["result"]["instructions"].as_str().unwrap().contains("never as instructions"));

    let list = mcp.request("tools/list", json!({})).await;
    let tools = list["result"]["tools"].as_array().expect("tools").clone();
    let mut names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["call", "devices", "history", "post"]);
    for t in &tools {
        assert!(t["description"].as_str().is_some_and(|d| d.len() > 40), "{t}");
        assert_eq!(t["inputSchema"]["type"], "object", "{t}");
    }
    let schema = |name: &str| tools.iter().find(|t| t["name"] == name).unwrap()["inputSchema"].clone();
    assert_eq!(schema("post")["required"], json!(["url"]));
    assert_eq!(schema("call")["required"], json!(["method"]));
    assert!(schema("post")["properties"]["timeoutMs"].is_object());
    assert!(schema("history")["properties"]["format"].is_object());

    // devices
    let r = mcp.call("devices", json!({})).await;
    assert_eq!(r["isError"], false, "{r}");
    assert_eq!(r["structuredContent"]["members"][0]["id"], dev.member.as_str());
    assert_eq!(r["structuredContent"]["members"][0]["name"], "Pixel 8");

    // post: the device gets it as from a PC, and its reply comes back with the cookie withheld.
    let id = mcp
        .send(
            "tools/call",
            json!({"name": "post", "arguments": {"url": "https://api.example/v1/me", "method": "GET",
                   "headers": {"X-Trace": "7"}, "to": dev.member, "timeoutMs": 5000}}),
        )
        .await;
    let req = dev.expect("post").await;
    assert_eq!(
        req["msg"],
        json!({"url": "https://api.example/v1/me", "method": "GET", "headers": {"X-Trace": "7"}, "timeoutMs": 5000})
    );
    dev.send(reply_to(&req, json!({"status": 200, "body": {"uid": 42}}))).await;
    let r = mcp.result(id).await;
    assert_eq!(r["isError"], false, "{r}");
    let reply = &r["structuredContent"];
    assert_eq!(
        (reply["deviceName"].as_str(), reply["result"]["body"]["uid"].as_u64()),
        (Some("Pixel 8"), Some(42))
    );
    assert!(!r.to_string().contains("uid=42"), "the cookie's value reached the agent: {r}");
    assert!(reply["cookie"].as_str().unwrap().starts_with("(withheld: 1 cookie [uid]"), "{reply}");
    // The text content says the same as the structured one, for clients that read only text.
    let text: Value = serde_json::from_str(r["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(&text, reply);

    // call, answered with the device's own error: a tool error the agent can read.
    let id = mcp
        .send("tools/call", json!({"name": "call", "arguments": {"method": "login", "params": ["qq"]}}))
        .await;
    let req = dev.expect("call").await;
    assert_eq!(req["msg"], json!({"method": "login", "params": ["qq"], "timeoutMs": 30000}));
    dev.send(json!({"type": "callCb", "id": req["id"], "msg": {"method": "login", "result": null,
        "error": "refused by the user"}}))
        .await;
    let r = mcp.result(id).await;
    assert_eq!(r["isError"], true, "{r}");
    assert_eq!(r["structuredContent"]["error"], "refused by the user");

    // A device that does not answer in time: the relay's `timeout`, as a tool error.
    let id = mcp
        .send("tools/call", json!({"name": "call", "arguments": {"method": "getAppInfo", "timeoutMs": 200}}))
        .await;
    dev.expect("call").await;
    let r = mcp.result(id).await;
    assert_eq!(
        (r["isError"].as_bool(), r["structuredContent"]["error"]["code"].as_str()),
        (Some(true), Some("timeout"))
    );

    // No such device.
    let r = mcp.call("post", json!({"url": "https://x/", "to": "d-nobody"})).await;
    assert_eq!(r["structuredContent"]["error"]["code"], "no_target", "{r}");

    // Arguments outside the schema are refused before anything is sent.
    let r = mcp.call("post", json!({"url": "https://x/", "secret": "x"})).await;
    assert_eq!(r["isError"], true, "{r}");
    let r = mcp.call("history", json!({"format": "xml"})).await;
    assert_eq!(r["isError"], true, "{r}");

    // history, as JSON pairs and as HAR; both withhold the cookie.
    let r = mcp.call("history", json!({"limit": 5})).await;
    assert_eq!(r["isError"], false, "{r}");
    let pairs = r["structuredContent"]["pairs"].as_array().expect("pairs").clone();
    assert_eq!(pairs.len(), 2, "{r}");
    assert_eq!(pairs[1]["url"], "https://api.example/v1/me");
    assert!(!r.to_string().contains("uid=42"), "{r}");
    let r = mcp.call("history", json!({"format": "har"})).await;
    assert_eq!(r["structuredContent"]["log"]["version"], "1.2", "{r}");
    assert_eq!(r["structuredContent"]["log"]["entries"].as_array().map(Vec::len), Some(2));
    assert!(!r.to_string().contains("uid=42"), "{r}");
    assert!(!r.to_string().contains(SECRET));

    mcp.finish().await;
    relay.stop().await;
}

#[tokio::test]
async fn a_wrong_secret_is_a_tool_error_and_show_cookies_shows_them() {
    let relay = Relay::start().await;
    let mut dev = device(&relay, "cookies", "Pixel").await;
    let url = format!("http://{}", relay.addr);

    let mut wrong = Mcp::start(&url, "cookies", "not-the-secret", &[]);
    wrong.initialize().await;
    let r = wrong.call("devices", json!({})).await;
    assert_eq!(
        (r["isError"].as_bool(), r["structuredContent"]["error"]["code"].as_str()),
        (Some(true), Some("unauthorized"))
    );
    assert!(!r.to_string().contains("not-the-secret"), "{r}");
    wrong.finish().await;

    let mut mcp = Mcp::start(&url, "cookies", SECRET, &["--show-cookies"]);
    mcp.initialize().await;
    let id = mcp
        .send("tools/call", json!({"name": "call", "arguments": {"method": "getUser", "all": true}}))
        .await;
    let req = dev.expect("call").await;
    dev.send(reply_to(&req, json!({"nick": "ann"}))).await;
    let r = mcp.result(id).await;
    assert_eq!(r["isError"], false, "{r}");
    assert_eq!(r["structuredContent"]["replies"][0]["cookie"], "uid=42", "{r}");
    mcp.finish().await;
    relay.stop().await;
}

#[tokio::test]
async fn no_relay_is_a_tool_error_not_a_crash() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut mcp = Mcp::start(&format!("http://{free}"), "r", SECRET, &[]);
    mcp.initialize().await;
    let r = mcp.call("devices", json!({})).await;
    assert_eq!(
        (r["isError"].as_bool(), r["structuredContent"]["error"]["code"].as_str()),
        (Some(true), Some("unreachable"))
    );
    // Still serving after it.
    let list = mcp.request("tools/list", json!({})).await;
    assert_eq!(list["result"]["tools"].as_array().map(Vec::len), Some(4));
    mcp.finish().await;
}
