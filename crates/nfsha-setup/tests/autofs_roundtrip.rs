//! Property: for arbitrary autofs layouts (indirect and direct maps, comments, blank
//! lines, continuation lines, non-NFS keys, no trailing newline), setup followed by
//! undo gives back every original byte, and a second setup run is a no-op.

mod common;

use common::*;
use nfsha_setup::{SetupError, apply, apply_undo, plan, plan_undo};
use proptest::prelude::*;

/// One map entry for key `k` (possibly spread over continuation lines).
fn entry(k: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        // NFS, one line
        (
            "[a-z]{1,4}",
            prop_oneof![
                Just("-fstype=nfs4,rw,hard"),
                Just("-vers=4.1,soft"),
                Just("")
            ],
            prop_oneof![Just(" "), Just("\t"), Just("    ")],
        )
            .prop_map(move |(h, o, w)| format!("k{k}{w}{o}{w}{h}:/srv/k{k}")),
        // NFS, replicas, continued
        ("[a-z]{1,4}", "[a-z]{1,4}")
            .prop_map(move |(a, b)| format!("k{k} \\\n  -vers=4.2 \\\n  {a},{b}(3):/srv/k{k}")),
        // not NFS
        Just(format!("k{k} -fstype=iso9660,ro :/dev/cdrom")),
    ]
}

fn filler() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "# [ -~]{0,20}",
        Just("   ".to_string())
    ]
}

fn map(n: usize) -> impl Strategy<Value = String> {
    (
        (0..n).map(entry).collect::<Vec<_>>(),
        prop::collection::vec(filler(), n),
        any::<bool>(),
    )
        .prop_map(|(entries, fill, trailing)| {
            let mut t = entries
                .iter()
                .zip(&fill)
                .map(|(e, f)| format!("{f}\n{e}"))
                .collect::<Vec<_>>()
                .join("\n");
            if trailing {
                t.push('\n');
            }
            t
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn setup_then_undo_restores_autofs_bytes(
        indirect in map(3),
        direct in map(2),
        master_tail in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        put(root, "/etc/fstab", SYSTEM_FSTAB, 0o644);
        let mut master = "# master\n+dir:/etc/auto.master.d\n/data /etc/auto.data --timeout=30 --ghost\n/- /etc/auto.direct".to_string();
        if master_tail {
            master.push('\n');
        }
        put(root, "/etc/auto.master", &master, 0o644);
        std::fs::create_dir_all(root.join("etc/auto.master.d")).unwrap();
        put(root, "/etc/auto.data", &indirect, 0o644);
        // Direct map keys are absolute paths.
        put(root, "/etc/auto.direct", &direct.replace("\nk", "\n/direct/k"), 0o644);
        let before = tree(root);
        let o = opts(root);
        let host = FakeHost::with_all_tools();
        let p = match plan(&o, &host) {
            Ok(p) => p,
            // An indirect map mixing NFS and non-NFS keys cannot be taken over: refused,
            // root untouched.
            Err(SetupError::Invalid(problems)) => {
                prop_assert!(
                    problems.iter().all(|d| !d.is_error() || d.message.contains("also serves")),
                    "{}", nfsha_setup::render_problems(&problems)
                );
                prop_assert_eq!(tree(root), before);
                return Ok(());
            }
            Err(SetupError::NothingToImport(_)) => {
                prop_assert_eq!(tree(root), before);
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        };
        apply(&o, &p, now()).unwrap();
        prop_assert!(plan(&o, &host).unwrap().is_empty(), "second run is not a no-op");
        let (u, m) = plan_undo(&o).unwrap();
        apply_undo(&o, &u, &m).unwrap();
        let mut after = tree(root);
        after.retain(|p, _| !p.starts_with("var"));
        prop_assert_eq!(after, before);
    }
}
