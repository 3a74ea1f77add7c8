//! docs/draw_reference.py, an independent stdlib-only implementation of the specification,
//! reaches the same verdicts as ours on the vectors (full and public records, the generator,
//! the commitments) and on a re-seeded forgery. Skipped (with a message) where python3 is
//! absent; CI has it.

use std::process::Command;

use spotcheck_collector::draw::DrawRecord;

use super::vectors::{commitment_of, dir, salt_key, seed, small_record};

const REFERENCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/draw_reference.py");

fn python() -> bool {
    Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn reference(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let out = Command::new("python3")
        .arg(REFERENCE)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn the_python_reference_agrees_on_the_vectors_and_refuses_a_reseeded_forgery() {
    if !python() {
        eprintln!("python3 not found: skipping the cross-check with docs/draw_reference.py");
        return;
    }
    let v = |name: &str| dir().join(name).into_os_string();
    let (code, out) = reference(&[
        v("draw-small.json").as_os_str(),
        v("draw-medium.json").as_os_str(),
        v("public-small.json").as_os_str(),
        v("public-medium.json").as_os_str(),
        "--commitments".as_ref(),
        v("commitments.json").as_os_str(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches(": match").count(), 4, "{out}");
    let (code, out) = reference(&["--rng".as_ref(), v("rng.json").as_os_str()]);
    assert_eq!(code, 0, "{out}");

    let tmp = tempfile::tempdir().unwrap();
    let genuine = small_record();
    let forged = DrawRecord::make(
        seed("another seed"),
        salt_key("spotcheck vector small"),
        &genuine.input().unwrap(),
    )
    .unwrap();
    let commitments = tmp.path().join("c.json");
    std::fs::write(
        &commitments,
        serde_json::to_string(&[commitment_of(&genuine)]).unwrap(),
    )
    .unwrap();
    for (name, json) in [
        ("f.json", serde_json::to_string(&forged).unwrap()),
        (
            "fp.json",
            serde_json::to_string(&forged.to_public()).unwrap(),
        ),
    ] {
        let file = tmp.path().join(name);
        std::fs::write(&file, json).unwrap();
        let (code, out) = reference(&[file.as_os_str()]);
        assert_eq!(code, 0, "alone, the forgery is consistent: {out}");
        let (code, out) = reference(&[
            file.as_os_str(),
            "--commitments".as_ref(),
            commitments.as_os_str(),
        ]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("MISMATCH in commitment"), "{out}");
    }

    // Uppercase hex is refused by both.
    let mut upper: serde_json::Value = serde_json::to_value(&genuine).unwrap();
    upper["seed"] = genuine.seed.to_string().to_uppercase().into();
    let file = tmp.path().join("upper.json");
    std::fs::write(&file, upper.to_string()).unwrap();
    let (code, out) = reference(&[file.as_os_str()]);
    assert_eq!(code, 1, "{out}");
    assert!(serde_json::from_value::<DrawRecord>(upper).is_err());
}
