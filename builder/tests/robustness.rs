//! Bad and big input: random mutations of the corpus never panic the parser, the
//! planner or the evaluator; a 1 MB Dockerfile parses in reasonable time.

use std::path::Path;
use std::time::Instant;

use hutch_builder::{parse, plan, BuildArgs, StageState};

fn corpus() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files = Vec::new();
    for sub in [dir.clone(), dir.join("errors")] {
        for e in std::fs::read_dir(sub).expect("corpus dir").flatten() {
            if e.path().extension().is_some_and(|x| x == "Dockerfile") {
                files.push(std::fs::read(e.path()).expect("read"));
            }
        }
    }
    files
}

/// Runs everything the front end does on one input; errors are fine, panics are not.
fn exercise(bytes: &[u8]) {
    let Ok(df) = parse("Dockerfile", bytes) else {
        return;
    };
    let args = BuildArgs::new();
    let Ok(p) = plan(&df, None, &args, None) else {
        return;
    };
    for &i in &p.order {
        let mut st = StageState::default();
        for ins in &df.stages[i].instructions {
            if st
                .step(&df.file, df.escape, ins, &args, &p.global_args)
                .is_err()
            {
                break;
            }
        }
    }
    let _ = df.to_string();
}

const NASTY: &[&[u8]] = &[
    b"\\",
    b"`",
    b"\n",
    b"<<",
    b"<<-",
    b"EOF",
    b"${",
    b"}",
    b"$",
    b"\"",
    b"'",
    b"[",
    b"]",
    b"--",
    b"--mount=",
    b"#",
    b"# escape=`\n",
    b"\t",
    b"\r\n",
    b"=",
    b",",
    b"\xff",
    b"\xc3",
    b"FROM ",
    b"ONBUILD ",
    b"COPY --from=",
    b"RUN <<EOF\n",
    b" AS ",
    b"\0",
];

#[test]
fn random_mutations_never_panic() {
    let files = corpus();
    let mut rng = fastrand::Rng::with_seed(0x6875_7463);
    let mut runs = 0;
    for _ in 0..4000 {
        let mut bytes = files[rng.usize(..files.len())].clone();
        for _ in 0..rng.usize(1..6) {
            let at = rng.usize(..=bytes.len());
            match rng.u8(..4) {
                0 if !bytes.is_empty() => {
                    let end = (at + rng.usize(1..8)).min(bytes.len());
                    bytes.drain(at.min(end)..end);
                }
                1 => {
                    let piece = NASTY[rng.usize(..NASTY.len())];
                    bytes.splice(at..at, piece.iter().copied());
                }
                2 if !bytes.is_empty() => {
                    let i = rng.usize(..bytes.len());
                    bytes[i] = rng.u8(..);
                }
                _ => {
                    // Splice a slice of another corpus file in.
                    let other = &files[rng.usize(..files.len())];
                    let s = rng.usize(..=other.len());
                    let e = (s + rng.usize(0..80)).min(other.len());
                    bytes.splice(at..at, other[s..e].iter().copied());
                }
            }
        }
        exercise(&bytes);
        runs += 1;
    }
    assert_eq!(runs, 4000);
}

#[test]
fn one_megabyte_dockerfile_parses() {
    let mut text =
        String::from("# syntax=docker/dockerfile:1\nARG BASE=alpine\nFROM ${BASE} AS build\n");
    let mut i = 0;
    while text.len() < 1 << 20 {
        text.push_str(&format!(
            "ENV V{i}=value{i} W{i}=\"${{V{i}:-x}}\"\nRUN --mount=type=cache,target=/c{i} echo {i} \\\n  && echo continued\nCOPY --chown=1:1 src{i} /dst/{i}/\nRUN <<EOF\necho heredoc {i}\nEOF\n"
        ));
        i += 1;
    }
    let start = Instant::now();
    let df = parse("Dockerfile", text.as_bytes()).expect("big file parses");
    let parsed = start.elapsed();
    let p = plan(&df, None, &BuildArgs::new(), None).expect("plans");
    let mut st = StageState::default();
    for ins in &df.stages[0].instructions {
        st.step(&df.file, df.escape, ins, &BuildArgs::new(), &p.global_args)
            .expect("expands");
    }
    println!(
        "1 MB Dockerfile ({} bytes, {} instructions): parsed in {parsed:?}, parsed+planned+evaluated in {:?}",
        text.len(),
        df.stages[0].instructions.len(),
        start.elapsed()
    );
    assert_eq!(df.stages[0].instructions.len(), i * 4);
    assert!(st.env.len() >= 2 * i);
}
