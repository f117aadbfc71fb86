//! Property: for arbitrary fstab contents, setup then undo gives back the original bytes,
//! and setup never drops or alters a non-NFS line.

mod common;

use common::*;
use nfsha_setup::fstab::{Kind, classify, lines};
use nfsha_setup::{apply, apply_undo, plan, plan_undo};
use proptest::prelude::*;

fn ws() -> impl Strategy<Value = String> {
    prop::collection::vec(prop_oneof![Just(" "), Just("\t"), Just("  ")], 1..3)
        .prop_map(|v| v.concat())
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-z0-9]{1,6}(\\\\040[a-z]{1,3})?", 1..3)
        .prop_map(|v| format!("/{}", v.join("/")))
}

/// One fstab line (without its newline).
fn line(i: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        // comments and blank lines
        "#[ -~\t]{0,30}",
        "[ \t]{0,3}",
        // non-NFS entries
        (path(), ws(), ws()).prop_map(|(p, a, b)| format!("UUID=abcd{a}{p}{b}ext4 defaults 0 2")),
        (ws(), ws()).prop_map(|(a, b)| format!("tmpfs{a}/tmp{b}tmpfs\tsize=1G")),
        Just("proc /proc proc defaults 0 0".to_string()),
        // NFS entries (unique mountpoints)
        (
            "[a-z]{1,5}(\\.[a-z]{1,3})?",
            path(),
            ws(),
            ws(),
            prop_oneof![Just("nfs"), Just("nfs4")],
            prop::collection::vec(
                prop_oneof![
                    Just("hard"),
                    Just("soft"),
                    Just("timeo=50"),
                    Just("_netdev"),
                    Just("vers=4.2"),
                    Just("nfsvers=3"),
                    Just("rw"),
                    Just("noatime")
                ],
                1..4
            ),
            prop_oneof![Just(""), Just(" 0 0"), Just("\t0\t0")],
        )
            .prop_map(move |(h, p, a, b, t, o, tail)| {
                format!("{h}:{p}{a}/nfs{i}{p}{b}{t} {}{tail}", o.join(","))
            }),
    ]
}

fn fstab() -> impl Strategy<Value = String> {
    (prop::collection::vec(any::<u8>(), 0..12), any::<bool>())
        .prop_flat_map(|(seeds, trailing)| {
            let lines: Vec<_> = (0..seeds.len()).map(line).collect();
            (lines, Just(trailing))
        })
        .prop_map(|(lines, trailing)| {
            let mut t = lines.join("\n");
            if trailing && !t.is_empty() {
                t.push('\n');
            }
            t
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn setup_then_undo_restores_fstab_bytes(text in fstab()) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        put(root, "/etc/fstab", &text, 0o644);
        let o = opts(root);
        let host = FakeHost::with_all_tools();
        let p = match plan(&o, &host) {
            Ok(p) => p,
            Err(nfsha_setup::SetupError::NothingToImport(_)) => {
                // No NFS line: nothing may have been touched.
                prop_assert_eq!(read(root, "/etc/fstab"), text);
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(format!("{e}\n---\n{text}"))),
        };
        apply(&o, &p, now()).unwrap();
        let after = read(root, "/etc/fstab");
        let before_lines = lines(&text);
        let after_lines = lines(&after);
        prop_assert_eq!(before_lines.len(), after_lines.len());
        for (b, a) in before_lines.iter().zip(&after_lines) {
            match classify(b) {
                Kind::Nfs(_) => prop_assert_eq!(a.text, format!("#nfsha-setup# {}", b.text)),
                _ => prop_assert_eq!(a, b, "a non-NFS line changed"),
            }
            prop_assert_eq!(a.end, b.end);
        }
        prop_assert!(plan(&o, &host).unwrap().is_empty(), "second run is not a no-op");
        let (u, m) = plan_undo(&o).unwrap();
        apply_undo(&o, &u, &m).unwrap();
        prop_assert_eq!(read(root, "/etc/fstab"), text);
        prop_assert!(!root.join("etc/systemd/system/nfsha-agent.service").exists());
        prop_assert!(!root.join("etc/nfsha").exists());
    }
}
