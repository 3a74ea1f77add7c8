//! Mosquitto as docs/security.md sets it up: TLS, a password file and the ACL from that page.
//! Agents and the collector work through it, strangers cannot connect, and an agent cannot
//! publish on another agent's topic even with that agent's key.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use spotcheck_e2e::*;

/// The ACL block of docs/security.md (the fenced block that starts `# spotcheck mosquitto acl`).
fn documented_acl() -> String {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/security.md"))
            .unwrap();
    let start = doc
        .find("# spotcheck mosquitto acl")
        .expect("docs/security.md has the Mosquitto ACL");
    let end = doc[start..].find("```").unwrap();
    doc[start..start + end].to_owned()
}

fn mosquitto_passwd(file: &Path, user: &str, password: &str, create: bool) {
    let mut cmd = Command::new("mosquitto_passwd");
    if create {
        cmd.arg("-c");
    }
    let ok = cmd
        .arg("-b")
        .arg(file)
        .args([user, password])
        .status()
        .unwrap();
    assert!(ok.success(), "mosquitto_passwd failed");
}

/// mosquitto_pub over TLS; whether it succeeded.
fn tls_pub(
    d: &Path,
    port: u16,
    login: Option<(&str, &str, &str)>,
    topic: &str,
    payload: &[u8],
) -> bool {
    let mut cmd = Command::new("/usr/bin/mosquitto_pub");
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-q",
        "1",
        "-t",
        topic,
    ])
    .arg("--cafile")
    .arg(d.join("ca.crt"))
    .arg("-m")
    .arg(String::from_utf8(payload.to_vec()).unwrap());
    if let Some((id, user, password)) = login {
        cmd.args(["-i", id, "-u", user, "-P", password]);
    }
    cmd.output().unwrap().status.success()
}

#[test]
fn agents_and_the_collector_work_through_mosquitto_with_tls_passwords_and_the_documented_acl() {
    let program = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(program) = program else {
        assert!(!servers_required(), "mosquitto is not installed");
        eprintln!("skipping: mosquitto is not installed");
        return;
    };
    if !have_mosquitto_pub() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tls::make_certificates(d);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();

    // Credentials: the collector's broker user, and two agents issued by the collector.
    ensure_credential(d, "a1");
    ensure_credential(d, "a2");
    let (a1, a2) = (credential(d, "a1"), credential(d, "a2"));
    let collector_password = "collector-secret-0123456789";
    std::fs::write(d.join("broker-password"), collector_password).unwrap();
    let passwd = d.join("spotcheck.passwd");
    mosquitto_passwd(&passwd, "spotcheck-collector", collector_password, true);
    mosquitto_passwd(&passwd, "a1", &a1.password.0, false);
    mosquitto_passwd(&passwd, "a2", &a2.password.0, false);
    std::fs::write(d.join("spotcheck.acl"), documented_acl()).unwrap();
    for f in [
        "ca.crt",
        "server.crt",
        "server.key",
        "spotcheck.passwd",
        "spotcheck.acl",
    ] {
        std::fs::set_permissions(d.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let port = free_port();
    let p = |f: &str| d.join(f).display().to_string();
    std::fs::write(
        d.join("mosquitto-secure.conf"),
        format!(
            "persistence false\nlistener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n\
             allow_anonymous false\npassword_file {}\nacl_file {}\nmax_inflight_messages 1000\n",
            p("ca.crt"),
            p("server.crt"),
            p("server.key"),
            p("spotcheck.passwd"),
            p("spotcheck.acl"),
        ),
    )
    .unwrap();
    let mut broker = Proc::spawn(
        "mosquitto",
        Path::new(program),
        &["-c", &p("mosquitto-secure.conf")],
        d,
    );
    wait_listening(
        "mosquitto's TLS listener",
        ([127, 0, 0, 1], port).into(),
        &mut broker,
    );

    let bindings = agent_binding("a1", "pool-1", "pool") + &agent_binding("a2", "pool-2", "pool");
    let mut c = Collector::start_external(
        d,
        &format!("mqtts://127.0.0.1:{port}"),
        port,
        &format!(
            "username = \"spotcheck-collector\"\npassword_file = {:?}\n[mqtt.tls]\nca_file = {:?}\n",
            p("broker-password"),
            p("ca.crt")
        ),
        &bindings,
    );
    let config = agent_config(d, "a1", "pool-1", "pool", port, 5, 10);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(
            &format!("mqtt://127.0.0.1:{port}"),
            &format!("mqtts://127.0.0.1:{port}"),
        )
        .replace(
            "ack_timeout_ms = 2000\n",
            &format!(
                "ack_timeout_ms = 2000\n[mqtt.tls]\nca_file = {:?}\n",
                p("ca.crt")
            ),
        );
    std::fs::write(&config, text).unwrap();
    let mut agent = start_agent(d, "agent", &config);
    c.wait_stat("batches_committed", 5, Duration::from_secs(60));
    // The agent got its (signed) acks through the ACL and stops once all are confirmed.
    let status = agent.wait(Duration::from_secs(30));
    assert!(status.success(), "agent failed:\n{}", agent.log());

    // Strangers and wrong passwords are refused.
    let now = spotcheck_protocol::UnixMillis::now().0;
    let a2_batch = |seq: u64| {
        spotcheck_protocol::mac::sign(
            &a2.key,
            format!(r#"{{"v":1,"agent":"a2","seq":{seq},"readings":[{{"metric":"ph","value":7.1,"unit":"pH","ts_ms":{now}}}]}}"#).as_bytes(),
        )
    };
    let a2_topic = "spotcheck/v1/pool/pool-2/a2/readings";
    assert!(!tls_pub(d, port, None, a2_topic, &a2_batch(1)));
    assert!(!tls_pub(
        d,
        port,
        Some(("x", "a2", "wrong")),
        a2_topic,
        &a2_batch(1)
    ));
    // a1 publishes on a2's topic, even with a2's key: the ACL drops it.
    tls_pub(
        d,
        port,
        Some(("a1-x", "a1", &a1.password.0)),
        a2_topic,
        &a2_batch(1),
    );
    // a2 itself gets through; once its batch is stored, a1's would have been too.
    assert!(tls_pub(
        d,
        port,
        Some(("a2", "a2", &a2.password.0)),
        a2_topic,
        &a2_batch(2)
    ));
    c.wait_stat("batches_committed", 6, Duration::from_secs(30));
    let db = c.db();
    let a2_seqs: Vec<(u64, i64)> = stored_batches(&db, "a2");
    assert_eq!(a2_seqs.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [2]);
    assert_eq!(count(&db, "SELECT count(*) FROM dead_letters"), 0);
}
