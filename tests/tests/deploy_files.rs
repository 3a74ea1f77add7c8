//! The deployment files in `deploy/` (docs/deploy.md): the systemd units parse without a
//! warning under `systemd-analyze verify`, and the commands they start are commands the
//! binaries have. Skipped where `systemd-analyze` is not installed.

use std::path::Path;
use std::process::Command;

use spotcheck_e2e::bin;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn the_systemd_units_verify_and_start_real_commands() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze is not installed; skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for name in ["collector", "agent"] {
        let unit = format!("spotcheck-{name}.service");
        let text = std::fs::read_to_string(root().join("deploy/systemd").join(&unit)).unwrap();
        let installed = format!("/usr/local/bin/spotcheck-{name}");
        assert!(text.contains(&installed), "{unit} starts {installed}");
        // Point the unit at the binary just built: verify checks that it is executable.
        let built = bin(&format!("spotcheck-{name}"));
        let path = dir.path().join(&unit);
        std::fs::write(&path, text.replace(&installed, built.to_str().unwrap())).unwrap();
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && said.trim().is_empty(),
            "{unit}: {said}"
        );
        // Every ExecStart line is a command the binary accepts (its --help answers).
        for line in text.lines().filter(|l| l.starts_with("ExecStart")) {
            let args: Vec<&str> = line.split_once('=').unwrap().1.split_whitespace().collect();
            let sub = args[1];
            let help = Command::new(&built).args([sub, "--help"]).output().unwrap();
            assert!(
                help.status.success(),
                "{unit}: `{sub}` is not a command of {name}"
            );
            for flag in args.iter().filter(|a| a.starts_with("--")) {
                assert!(
                    String::from_utf8_lossy(&help.stdout).contains(flag),
                    "{unit}: `{sub}` has no {flag}"
                );
            }
        }
    }
}
