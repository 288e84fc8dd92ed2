//! `.dockerignore` loading precedence and the context walk, including a context of
//! 100,000 files (timed, printed; no timing assertion).

use std::fs;
use std::path::Path;
use std::time::Instant;

use hutch_builder::dockerignore::EntryKind;
use hutch_builder::{walk_context, DockerIgnore};

fn write(root: &Path, rel: &str, body: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("has parent")).expect("mkdir");
    fs::write(p, body).expect("write");
}

fn paths(root: &Path, ig: &DockerIgnore) -> Vec<String> {
    walk_context(root, ig)
        .expect("walk")
        .into_iter()
        .map(|e| match e.kind {
            EntryKind::Dir => format!("{}/", e.path),
            _ => e.path,
        })
        .collect()
}

#[test]
fn walk_honours_exceptions_and_prunes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    for f in [
        "Dockerfile",
        "README.md",
        "docs/guide.md",
        "src/main.rs",
        "src/notes.md",
        "target/debug/app",
        "node_modules/a/index.js",
        "node_modules/keep/keep.js",
        "logs/x.log",
        ".git/HEAD",
    ] {
        write(root, f, "x");
    }
    write(root, ".dockerignore", "# comment\n.git\ntarget/\n/node_modules\n!node_modules/keep\n**/*.md\n!README.md\n*.log\nlogs\n");
    let ig = DockerIgnore::load(root, Some(&root.join("Dockerfile"))).expect("load");
    assert_eq!(
        ig.source.as_deref(),
        Some(root.join(".dockerignore").as_path())
    );
    assert_eq!(
        paths(root, &ig),
        [
            ".dockerignore",
            "Dockerfile",
            "README.md",
            "docs/",
            "node_modules/",
            "node_modules/keep/",
            "node_modules/keep/keep.js",
            "src/",
            "src/main.rs",
        ]
    );
}

#[test]
fn per_dockerfile_ignore_file_wins() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    write(root, ".dockerignore", "a\n");
    write(root, "build/app.Dockerfile", "FROM scratch\n");
    write(root, "build/app.Dockerfile.dockerignore", "b\n");
    write(root, "a", "x");
    write(root, "b", "x");
    let ig = DockerIgnore::load(root, Some(&root.join("build/app.Dockerfile"))).expect("load");
    assert!(ig.is_ignored("b") && !ig.is_ignored("a"));
    let plain = DockerIgnore::load(root, Some(&root.join("Dockerfile"))).expect("load");
    assert!(plain.is_ignored("a") && !plain.is_ignored("b"));
    let none = DockerIgnore::load(&root.join("build"), None).expect("load");
    assert!(none.is_empty());
}

#[test]
fn hundred_thousand_files() {
    // Creating 99,000 files is the slow part; a tmpfs keeps it to seconds.
    let shm = Path::new("/dev/shm");
    let tmp = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("tmp");
    let root = tmp.path();
    for d in 0..100 {
        let dir = root.join(format!("pkg{d:03}"));
        fs::create_dir_all(dir.join("gen")).expect("mkdir");
        for f in 0..990 {
            let sub = if f % 3 == 0 {
                dir.join("gen")
            } else {
                dir.clone()
            };
            fs::write(
                sub.join(format!("f{f:04}.{}", if f % 2 == 0 { "rs" } else { "o" })),
                b"",
            )
            .expect("write");
        }
    }
    write(
        root,
        ".dockerignore",
        "**/*.o\npkg0*/gen\n!pkg00*/gen/f0000.rs\n",
    );
    let ig = DockerIgnore::load(root, None).expect("load");
    let start = Instant::now();
    let entries = walk_context(root, &ig).expect("walk");
    println!(
        "walked a 99,000-file context in {:?}: {} entries included",
        start.elapsed(),
        entries.len()
    );
    let files: Vec<&str> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .map(|e| e.path.as_str())
        .collect();
    // Per package: 330 `.rs` files outside gen/; inside gen/ only the re-included
    // f0000.rs of pkg000..pkg009; plus the .dockerignore itself.
    assert_eq!(files.len(), 100 * 330 + 10 + 1);
    assert!(files.iter().all(|p| !p.ends_with(".o")));
    assert!(files.contains(&"pkg005/gen/f0000.rs"));
    assert!(!files.iter().any(|p| p.starts_with("pkg099/gen/")));
    assert!(files.contains(&"pkg099/f0002.rs"));
    for e in &entries {
        assert!(
            !ig.is_ignored(&e.path) || e.kind == EntryKind::Dir,
            "{} should be ignored",
            e.path
        );
    }
}
