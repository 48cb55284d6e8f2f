//! The agent's repository tools never leave the repo root (`..`, absolute paths and symlinks
//! pointing outside are refused) and bound what they return.

use crate::support::bound::within;
use crate::support::cogni::{repo, write};
use ratelimiter::runner::tools::{RepoTools, ToolError, ToolLimits};
use rstest::rstest;

fn tools(root: &std::path::Path) -> RepoTools {
    RepoTools::new(root, ToolLimits::default()).unwrap()
}

#[rstest]
#[case::parent("../secret.txt")]
#[case::nested_parent("src/../../secret.txt")]
#[case::absolute("/etc/passwd")]
#[case::dot_dot_only("..")]
fn paths_leaving_the_root_are_refused(#[case] path: &'static str) {
    within(5, move || {
        let outside = tempfile::tempdir().unwrap();
        let base = outside.path().join("repo");
        std::fs::create_dir_all(&base).unwrap();
        write(outside.path(), "secret.txt", "top secret");
        let t = tools(&base);
        for (name, args) in [
            ("read_file", format!(r#"{{"path":{path:?}}}"#)),
            ("list_dir", format!(r#"{{"path":{path:?}}}"#)),
            (
                "search_text",
                format!(r#"{{"pattern":"secret","path":{path:?}}}"#),
            ),
        ] {
            let err = t.call(name, &args).unwrap_err();
            assert!(matches!(err, ToolError::Refused(_)), "{name} {path}: {err}");
        }
    });
}

#[test]
fn symlinks_pointing_outside_are_refused_and_inside_ones_work() {
    within(5, || {
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret.txt", "top secret");
        let dir = repo();
        let root = dir.path();
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), root.join("leak.txt"))
            .unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("leakdir")).unwrap();
        std::os::unix::fs::symlink(root.join("src/main.rs"), root.join("main_link.rs")).unwrap();
        let t = tools(root);
        let err = t.read_file("leak.txt").unwrap_err();
        assert!(
            err.to_string()
                .contains("resolves outside the repository root"),
            "{err}"
        );
        assert!(matches!(
            t.list_dir("leakdir").unwrap_err(),
            ToolError::Refused(_)
        ));
        assert!(matches!(
            t.read_file("leakdir/secret.txt").unwrap_err(),
            ToolError::Refused(_)
        ));
        assert!(t.read_file("main_link.rs").unwrap().contains("hello tokio"));
        let found = t.search_text("secret", ".", false).unwrap();
        assert_eq!(
            found, "no matches for \"secret\"",
            "search never follows links outside"
        );
    });
}

#[test]
fn large_files_are_truncated_with_a_note() {
    within(5, || {
        let dir = repo();
        write(dir.path(), "big.txt", &"x".repeat(10_000));
        let limits = ToolLimits {
            max_read_bytes: 1000,
            ..ToolLimits::default()
        };
        let t = RepoTools::new(dir.path(), limits).unwrap();
        let text = t.read_file("big.txt").unwrap();
        assert!(text.starts_with(&"x".repeat(1000)));
        assert!(
            text.ends_with("\n[truncated: showing the first 1000 of 10000 bytes]"),
            "{}",
            &text[1000..]
        );
        let small = t.read_file("Cargo.toml").unwrap();
        assert!(!small.contains("truncated"));
    });
}

#[test]
fn list_read_and_search_inside_the_root() {
    within(5, || {
        let dir = repo();
        let t = tools(dir.path());
        assert_eq!(t.list_dir(".").unwrap(), "Cargo.toml\ndocs/\nsrc/");
        assert_eq!(t.call("list_dir", "{}").unwrap(), "Cargo.toml\ndocs/\nsrc/");
        assert_eq!(t.list_dir("src").unwrap(), "main.rs");
        assert!(t
            .call("read_file", r#"{"path":"./src/main.rs"}"#)
            .unwrap()
            .contains("fn main"));
        assert_eq!(
            t.search_text("tokio", ".", false).unwrap(),
            "docs/guide.md:2: Use tokio for async.\nsrc/main.rs:2: println!(\"hello tokio\");"
        );
        assert_eq!(
            t.search_text("TOKIO", "docs", true).unwrap(),
            "docs/guide.md:2: Use tokio for async."
        );
        assert!(matches!(
            t.read_file("nope.rs").unwrap_err(),
            ToolError::NotFound(_)
        ));
        assert!(matches!(
            t.call("rm", "{}").unwrap_err(),
            ToolError::UnknownTool(_)
        ));
        assert!(matches!(
            t.call("read_file", "not json").unwrap_err(),
            ToolError::InvalidArguments { .. }
        ));
    });
}

#[test]
fn search_and_listing_are_bounded() {
    within(5, || {
        let dir = repo();
        for i in 0..30 {
            write(dir.path(), &format!("many/f{i:02}.txt"), "needle\nneedle\n");
        }
        let limits = ToolLimits {
            max_search_matches: 5,
            max_list_entries: 10,
            ..ToolLimits::default()
        };
        let t = RepoTools::new(dir.path(), limits).unwrap();
        let found = t.search_text("needle", "many", false).unwrap();
        assert_eq!(found.lines().filter(|l| l.contains("needle")).count(), 5);
        assert!(found.ends_with("[truncated: search stopped at the match or file limit]"));
        let listed = t.list_dir("many").unwrap();
        assert!(
            listed.ends_with("[truncated: showing 10 of 30 entries]"),
            "{listed}"
        );
    });
}
