//! Cluster mode: relays sharing rooms through a real Redis.

use serde_json::{Value, json};
use tether_tests::{Client, Redis, Relay, get_json, post, reply_to};

async fn node(redis: &Redis, name: &str) -> Relay {
    let url = redis.url.clone();
    let name = name.to_owned();
    Relay::with(move |c| {
        c.redis = Some(url);
        c.node_id = Some(name);
    })
    .await
}

fn ids(members: &[Value]) -> Vec<String> {
    members.iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect()
}

/// `id` is listed exactly once, and not away.
fn live_once(members: &[Value], id: &str) -> bool {
    let entries: Vec<&Value> = members.iter().filter(|m| m["id"] == id).collect();
    entries.len() == 1 && entries[0]["away"] != true
}

/// The PC posts (request `id`), the device answers `result`, and the PC gets that answer.
async fn post_answered(pc: &mut Client, dev: &mut Client, id: &str, result: &str) {
    pc.send(post(id, "https://x/")).await;
    let req = dev.expect("post").await;
    dev.send(reply_to(&req, json!(result))).await;
    let cb = pc.expect("postCb").await;
    assert_eq!((cb["id"].as_str(), cb["msg"]["result"].as_str()), (Some(id), Some(result)), "{cb}");
}

#[tokio::test]
async fn a_pc_on_one_relay_drives_a_phone_on_another() {
    let Some(redis) = Redis::start() else { return };
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let mut pc = a.join("spanning", "pc", "s3cret-0123456789abcdef").await;
    let mut dev = b.join("spanning", "device", "s3cret-0123456789abcdef").await;
    dev.send(json!({"type": "hello", "msg": {"name": "phone on b"}})).await;

    // Both see the whole room, across nodes.
    let members = pc.devices_until(|m| m.iter().any(|x| x["name"] == "phone on b")).await;
    assert_eq!(ids(&members), [pc.member.clone(), dev.member.clone()]);
    dev.devices_until(|m| ids(m).contains(&pc.member)).await;

    // A post from node a reaches the phone on node b, and its reply comes back.
    pc.send(post("1", "https://x/cross")).await;
    let req = dev.expect("post").await;
    assert_eq!(req["from"], pc.member.as_str());
    dev.send(reply_to(&req, json!({"via": "b"}))).await;
    let cb = pc.expect("postCb").await;
    assert_eq!((cb["id"].as_str(), cb["from"].as_str()), (Some("1"), Some(dev.member.as_str())));
    assert_eq!(cb["msg"]["result"]["via"], "b");

    // A call to that device by id.
    pc.send(
        json!({"type": "call", "id": "2", "to": dev.member, "msg": {"method": "login", "params": ["qq"]}}),
    )
    .await;
    let req = dev.expect("call").await;
    dev.send(reply_to(&req, json!(true))).await;
    assert_eq!(pc.expect("callCb").await["msg"]["result"], true);

    // The room's secret holds cluster-wide.
    let refused = Client::join_query(&b.ws_url(), "room=spanning&role=device&secret=guess-0123456789abcdef")
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.error["code"], "unauthorized");

    // The pair was stored where the reply arrived (node b), readable with the secret.
    let (status, items) =
        get_json(b.addr, "/api/rooms/spanning/history?secret=s3cret-0123456789abcdef").await;
    assert_eq!(status, 200);
    assert_eq!(items.as_array().unwrap().len(), 2);

    // A clean leave on b leaves a's list at once.
    let gone = dev.member.clone();
    dev.close().await;
    pc.devices_until(|m| !ids(m).contains(&gone)).await;
    pc.send(post("3", "https://x/nobody")).await;
    assert_eq!(pc.expect_error().await.0["code"], "no_target");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn three_nodes_a_killed_node_leaves_every_list_and_its_members_resume_on_another() {
    use tether_tests::RelayProcess;
    let Some(redis) = Redis::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let url = redis.url.as_str();
    let start = |name: &'static str| {
        let db = dir.path().join(format!("{name}.db"));
        async move {
            RelayProcess::start(
                "127.0.0.1:0",
                &db,
                &["--redis", url, "--node-id", name, "--heartbeat-ms", "200"],
            )
            .await
        }
    };
    let (a, b, c) = (start("a").await, start("b").await, start("c").await);
    let mut pc = Client::join(&a.ws_url(), "crash", "pc", "s-0123456789abcdef").await;
    let dev = Client::join(&b.ws_url(), "crash", "device", "s-0123456789abcdef").await;
    let (id, token) = (dev.member.clone(), dev.resume.clone());
    pc.devices_until(|m| ids(m).contains(&id)).await;

    // kill -9 of b: no goodbye; its alive key (three beats) runs out and a takes the device out.
    let t = std::time::Instant::now();
    b.signal("KILL").await;
    pc.devices_until(|m| !ids(m).contains(&id)).await;
    let took = t.elapsed();
    eprintln!("kill -9 of a node: its device left the other node's list after {took:?}");
    assert!(took < std::time::Duration::from_secs(3), "took {took:?}");
    drop(dev);

    // The phone comes back through another node with its token: same member id, and it works.
    let mut dev = Client::rejoin(&c.ws_url(), "crash", "device", "s-0123456789abcdef", &token).await;
    assert_eq!((dev.member.as_str(), dev.welcome["resumed"].as_bool()), (id.as_str(), Some(true)));
    pc.devices_until(|m| live_once(m, &id)).await;
    post_answered(&mut pc, &mut dev, "1", "on c").await;
    pc.send(json!({"type": "call", "id": "c1", "to": id, "msg": {"method": "getAppInfo", "params": []}}))
        .await;
    let req = dev.expect("call").await;
    dev.send(reply_to(&req, json!({"app": "news"}))).await;
    assert_eq!(pc.expect("callCb").await["msg"]["result"]["app"], "news");

    // A node stopped with SIGTERM: its PC gets 1012, comes back on c under its id.
    let pc_id = pc.member.clone();
    let pc_token = pc.resume.clone();
    let _ = a.signal("TERM").await;
    drop(pc);
    let mut pc = Client::rejoin(&c.ws_url(), "crash", "pc", "s-0123456789abcdef", &pc_token).await;
    assert_eq!((pc.member.as_str(), pc.welcome["resumed"].as_bool()), (pc_id.as_str(), Some(true)));
    post_answered(&mut pc, &mut dev, "2", "still c").await;
    drop((pc, dev));
    c.signal("TERM").await;
}

#[tokio::test]
async fn a_member_that_drops_resumes_on_another_live_node_which_takes_it_over() {
    let Some(redis) = Redis::start() else { return };
    let (a, b, c) = (node(&redis, "a").await, node(&redis, "b").await, node(&redis, "c").await);
    let mut pc = a.join("move", "pc", "s-0123456789abcdef").await;
    let dev = b.join("move", "device", "s-0123456789abcdef").await;
    let (id, token) = (dev.member.clone(), dev.resume.clone());
    pc.devices_until(|m| ids(m).contains(&id)).await;
    // The phone's connection drops (no close frame): b keeps it, away, for its grace window.
    drop(dev);
    pc.devices_until(|m| m.iter().any(|d| d["id"] == id.as_str() && d["away"] == true)).await;
    // It comes back through c: c takes it over under its id, b lets it go, and the list shows
    // it once, live, on c.
    let mut dev = Client::rejoin(&c.ws_url(), "move", "device", "s-0123456789abcdef", &token).await;
    assert_eq!((dev.member.as_str(), dev.welcome["resumed"].as_bool()), (id.as_str(), Some(true)));
    pc.devices_until(|m| live_once(m, &id)).await;
    post_answered(&mut pc, &mut dev, "1", "moved").await;
    // Its connection to c is still open when it comes back through b (c has not noticed it
    // went): b takes it over, the connection on c is closed as `replaced`, and it works on b.
    // Each welcome carries a new token: the first one is spent on every node.
    let fresh = dev.resume.clone();
    let stale = dev;
    let spent = Client::rejoin(&b.ws_url(), "move", "device", "s-0123456789abcdef", &token).await;
    assert_ne!(spent.member, id, "a spent token resumes nothing, on any node");
    drop(spent);
    let mut dev = Client::rejoin(&b.ws_url(), "move", "device", "s-0123456789abcdef", &fresh).await;
    assert_eq!((dev.member.as_str(), dev.welcome["resumed"].as_bool()), (id.as_str(), Some(true)));
    assert_eq!(stale.wait_close().await, Some(4409), "the old connection is replaced");
    pc.devices_until(|m| live_once(m, &id)).await;
    post_answered(&mut pc, &mut dev, "2", "back on b").await;
    // A token from another room or role resumes nothing.
    let other = Client::rejoin(&c.ws_url(), "move", "pc", "s-0123456789abcdef", &token).await;
    assert_ne!(other.member, id);
    assert_eq!(other.welcome["resumed"], false);
    for r in [a, b, c] {
        r.stop().await;
    }
}

#[tokio::test]
async fn redis_going_away_leaves_local_rooms_working_says_so_across_nodes_and_recovers() {
    use tether_tests::wait_metric;
    let Some(redis) = Redis::start() else { return };
    let port = redis.port();
    let fast = |name: &'static str| {
        let url = redis.url.clone();
        move |c: &mut tether_relay::Config| {
            c.redis = Some(url);
            c.node_id = Some(name.into());
        }
    };
    let a = Relay::with(fast("a")).await;
    let b = Relay::with(fast("b")).await;
    let mut pc = a.join("split", "pc", "s-0123456789abcdef").await;
    let mut dev = b.join("split", "device", "s-0123456789abcdef").await;
    pc.devices_until(|m| ids(m).contains(&dev.member)).await;
    let mut local_pc = a.join("local", "pc", "s-0123456789abcdef").await;
    let mut local_dev = a.join("local", "device", "s-0123456789abcdef").await;

    drop(redis);
    wait_metric(a.addr, "tether_cluster_up 0").await;
    // Across nodes: a clear error, nothing lost silently.
    pc.send(post("down", "https://x/")).await;
    let (err, id) = pc.expect_error().await;
    assert_eq!((err["code"].as_str(), id.as_str()), (Some("cluster_unavailable"), Some("down")), "{err}");
    // Within one node: as if nothing happened.
    local_pc.send(post("l1", "https://x/local")).await;
    let req = local_dev.expect("post").await;
    local_dev.send(reply_to(&req, json!("still fine"))).await;
    assert_eq!(local_pc.expect("postCb").await["msg"]["result"], "still fine");

    // Redis comes back empty (it kept nothing): both nodes subscribe again and say their members
    // again, and neither takes the other for dead while their liveness keys are being rewritten.
    let _redis = Redis::start_on(port).expect("restart redis");
    wait_metric(a.addr, "tether_cluster_up 1").await;
    wait_metric(b.addr, "tether_cluster_up 1").await;
    pc.devices_until(|m| ids(m).contains(&dev.member)).await;
    post_answered(&mut pc, &mut dev, "up", "back").await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_hung_redis_counts_as_down_within_two_beats_and_senders_are_told() {
    use tether_tests::wait_metric;
    let Some(redis) = Redis::start() else { return };
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill").args([sig, &redis.pid().to_string()]).status().unwrap();
        assert!(ok.success());
    };
    let (a, b) = (node(&redis, "a").await, node(&redis, "b").await);
    let mut pc = a.join("hang", "pc", "s-0123456789abcdef").await;
    let mut dev = b.join("hang", "device", "s-0123456789abcdef").await;
    pc.devices_until(|m| ids(m).contains(&dev.member)).await;
    // Stopped, not gone: its sockets stay open and nothing answers on them.
    signal("-STOP");
    wait_metric(a.addr, "tether_cluster_up 0").await;
    pc.send(post("hung", "https://x/")).await;
    let (err, id) = pc.expect_error().await;
    assert_eq!((err["code"].as_str(), id.as_str()), (Some("cluster_unavailable"), Some("hung")), "{err}");
    signal("-CONT");
    wait_metric(a.addr, "tether_cluster_up 1").await;
    wait_metric(b.addr, "tether_cluster_up 1").await;
    post_answered(&mut pc, &mut dev, "again", "fine").await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn the_http_api_on_one_relay_drives_phones_on_another() {
    use tether_tests::{http_get_with, post_json};
    const SECRET: &str = "api-cluster-0123456789abcdef";
    let Some(redis) = Redis::start() else { return };
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let mut far = b.join("reach", "device", SECRET).await;
    far.send(json!({"type": "hello", "msg": {"name": "phone on b"}})).await;
    far.devices_until(|m| m.iter().any(|x| x["name"] == "phone on b")).await;

    // Nobody is in the room on a: it still answers from the cluster's list, for the secret's
    // holder only.
    let auth = format!("Bearer {SECRET}");
    let (status, _, body) =
        http_get_with(a.addr, "/api/rooms/reach/devices", &[("Authorization", &auth)]).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ids(v["members"].as_array().unwrap()), [far.member.clone()]);
    let wrong = [("Authorization", "Bearer guess-0123456789abcdef")];
    assert_eq!(http_get_with(a.addr, "/api/rooms/reach/devices", &wrong).await.0, 401);

    // A post through a reaches the phone on b, and its reply comes back through the bus.
    let addr = a.addr;
    let pending = tokio::spawn(async move {
        post_json(addr, "/api/rooms/reach/post", Some(SECRET), &json!({"url": "https://x/far"})).await
    });
    let req = far.expect("post").await;
    far.send(reply_to(&req, json!({"via": "b"}))).await;
    let (status, reply, _) = pending.await.unwrap();
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        (reply["device"].as_str(), reply["result"]["via"].as_str()),
        (Some(far.member.as_str()), Some("b"))
    );

    // With a phone on each relay, `all` gathers both.
    let mut near = a.join("reach", "device", SECRET).await;
    near.devices_until(|m| ids(m).contains(&far.member)).await;
    let pending = tokio::spawn(async move {
        post_json(addr, "/api/rooms/reach/call", Some(SECRET), &json!({"method": "whoami", "all": true}))
            .await
    });
    for dev in [&mut far, &mut near] {
        let req = dev.expect("call").await;
        let who = dev.member.clone();
        dev.send(reply_to(&req, json!(who))).await;
    }
    let (status, v, _) = pending.await.unwrap();
    assert_eq!(status, 200, "{v}");
    let mut got: Vec<String> =
        v["replies"].as_array().unwrap().iter().map(|r| r["result"].as_str().unwrap().to_owned()).collect();
    got.sort();
    let mut want = vec![far.member.clone(), near.member.clone()];
    want.sort();
    assert_eq!(got, want, "{v}");

    // A room open only on b, asked on a while Redis hangs: a cannot tell, and says so (no
    // strike: the secret may well be right).
    let lone = b.join("only-on-b", "device", SECRET).await;
    let path = "/api/rooms/only-on-b/devices";
    let (status, _, body) = http_get_with(a.addr, path, &[("Authorization", &auth)]).await;
    assert_eq!(status, 200, "{body}");
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill").args([sig, &redis.pid().to_string()]).status().unwrap();
        assert!(ok.success());
    };
    signal("-STOP");
    let (status, _, body) = http_get_with(a.addr, path, &[("Authorization", &auth)]).await;
    signal("-CONT");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, v["error"]["code"].as_str()), (503, Some("cluster_unavailable")), "{v}");
    let (status, _, body) = http_get_with(a.addr, path, &[("Authorization", &auth)]).await;
    assert_eq!(status, 200, "{body}");
    drop(lone);
    a.stop().await;
    b.stop().await;
}
