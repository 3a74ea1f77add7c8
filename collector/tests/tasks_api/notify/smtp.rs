//! E-mail to a real SMTP server (aiosmtpd) over STARTTLS with auth.

use std::net::TcpListener;

use serde_json::{json, Value};
use spotcheck_collector::rulebook::Rulebook;
use spotcheck_protocol::UnixMillis;

use crate::helpers::App;

use super::*;

/// aiosmtpd with STARTTLS (a throw-away certificate) and AUTH, on a free port; None when
/// python3 or aiosmtpd is missing (a failure with SPOTCHECK_REQUIRE_SERVERS=1).
struct Smtp {
    child: std::process::Child,
    port: u16,
    out: std::path::PathBuf,
    ca: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Smtp {
    fn start() -> Option<Smtp> {
        let required = std::env::var("SPOTCHECK_REQUIRE_SERVERS").is_ok_and(|v| v == "1");
        let have = std::process::Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
        if !have {
            assert!(
                !required,
                "python3 with aiosmtpd is required (pip install aiosmtpd)"
            );
            eprintln!("skipping: python3 with aiosmtpd not found (pip install aiosmtpd)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        // A CA and a server certificate for localhost signed by it (rustls refuses a
        // self-signed CA certificate as the server's own).
        let (cert, key, ca) = (
            dir.path().join("server.crt"),
            dir.path().join("server.key"),
            dir.path().join("ca.crt"),
        );
        std::fs::write(
            dir.path().join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        for args in [
            "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 1 -subj /CN=notify-test-ca",
            "req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost",
            "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 1 -extfile server.ext",
        ] {
            let out = std::process::Command::new("openssl")
                .args(args.split(' '))
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "openssl {args}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let out = dir.path().join("mail");
        std::fs::create_dir(&out).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/tasks_api/smtp_server.py"
        );
        let mut child = std::process::Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(&cert)
            .arg(&key)
            .args(["spotcheck", "smtp-password"])
            .arg(&out)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "aiosmtpd started");
        Some(Smtp {
            child,
            port,
            out,
            ca,
            _dir: dir,
        })
    }

    fn mails(&self) -> Vec<Value> {
        let mut files: Vec<_> = std::fs::read_dir(&self.out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
            .collect()
    }

    fn channel(&self, password: &str) -> Value {
        json!({"name": "mail", "type": "email", "smtp_host": "localhost", "smtp_port": self.port,
               "tls": "starttls", "ca_file": self.ca, "username": "spotcheck", "password": password,
               "from": "Spotcheck <spotcheck@example.cn>", "to": ["office@example.cn"]})
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_mail_reaches_a_real_smtp_server_over_starttls_with_auth() {
    let Some(smtp) = Smtp::start() else { return };
    let app = App::start().await;
    let r = app
        .send(
            "PUT",
            "/api/v1/contacts/health",
            Some(crate::helpers::ADMIN),
            &json!([{"name": "李强", "email": "li.qiang@example.cn"}]).to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // A wrong password: the test send says so at once.
    save_rules(&app, json!({"channels": [smtp.channel("wrong")]})).await;
    let t = app
        .admin("POST", "/api/v1/notify/channels/mail/test", "")
        .await;
    assert_eq!(t["ok"], false, "{t}");
    assert!(smtp.mails().is_empty());
    save_rules(
        &app,
        json!({"channels": [smtp.channel("smtp-password")],
               "routes": [{"name": "health", "departments": ["health"], "channels": ["mail"],
                           "liaisons": true, "group_wait_s": 0}]}),
    )
    .await;
    let t = app
        .admin("POST", "/api/v1/notify/channels/mail/test", "")
        .await;
    assert_eq!(t["ok"], true, "{t}");
    let _open = breach(&app, 4, "pool-agent-mail");
    let book = Rulebook::load(None).unwrap();
    let r = crate::test_store::Off::new(|| {
        spotcheck_collector::notify::Worker::connect(
            &app.store,
            settings(),
            spotcheck_collector::notify::scan::ScanSettings {
                publish_within_days: 20,
            },
        )
        .unwrap()
        .with_rulebook(book)
    })
    .run(|w| w.step(UnixMillis::now()))
    .unwrap();
    assert_eq!(r.sent, 1, "{r:?}");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 2, "{mails:?}");
    let test = &mails[0];
    assert!(
        test["subject"].as_str().unwrap().contains("测试消息"),
        "{test}"
    );
    let m = &mails[1];
    assert_eq!(m["tls"], true, "STARTTLS before anything else");
    assert_eq!(m["authenticated"], true);
    assert_eq!(
        m["rcpt"],
        json!(["office@example.cn", "li.qiang@example.cn"])
    );
    assert_eq!(m["subject"], "【health】［高］异常任务已创建");
    let text = m["text"].as_str().unwrap();
    assert!(
        text.contains("规则 游离性余氯 0.3–1.0 mg/L（pool/free_chlorine）")
            && text.contains("#/task/"),
        "{text}"
    );
}
