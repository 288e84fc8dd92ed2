//! A build result as an LLB definition, and back. buildx asks the result of
//! one bake target for its definition (`Ref.def`) and hands it to another
//! target's build as a frontend input, the value of a named context
//! `input:KEY` (bake's `contexts = { base = "target:base" }`). hutch runs
//! Dockerfiles itself and keeps no LLB, so the definition it gives stands
//! for the image the build made: one `docker-image://ID` source (what
//! BuildKit's own definition of an image is) and the terminal op that
//! returns it. Reading one back accepts exactly that shape.

use std::collections::HashMap;

use prost::Message;

use super::proto::pb;

const IMAGE_SCHEME: &str = "docker-image://";

/// The definition of the image `id` (a build's result).
pub fn of_image(id: &str) -> pb::Definition {
    let source = pb::Op {
        inputs: Vec::new(),
        op: Some(pb::op::Op::Source(pb::SourceOp {
            identifier: format!("{IMAGE_SCHEME}{id}"),
            attrs: HashMap::new(),
        })),
    }
    .encode_to_vec();
    let source_digest = digest(&source);
    let terminal = pb::Op {
        inputs: vec![pb::Input {
            digest: source_digest.clone(),
            index: 0,
        }],
        op: None,
    }
    .encode_to_vec();
    let short = id.trim_start_matches("sha256:").get(..12).unwrap_or(id);
    let described = pb::OpMetadata {
        description: HashMap::from([(
            "llb.customname".to_owned(),
            format!("[hutch] build result {short}"),
        )]),
    };
    pb::Definition {
        metadata: HashMap::from([
            (source_digest, described),
            (digest(&terminal), pb::OpMetadata::default()),
        ]),
        def: vec![source, terminal],
    }
}

/// The image a definition stands for: its terminal op returns a
/// `docker-image://` source with no inputs. `None` for any other graph.
pub fn image_of(def: &pb::Definition) -> Option<String> {
    let last = pb::Op::decode(def.def.last()?.as_slice()).ok()?;
    let [input] = last.inputs.as_slice() else {
        return None;
    };
    let source = def.def.iter().find(|op| digest(op) == input.digest)?;
    let source = pb::Op::decode(source.as_slice()).ok()?;
    match source.op? {
        pb::op::Op::Source(s) if source.inputs.is_empty() => s
            .identifier
            .strip_prefix(IMAGE_SCHEME)
            .filter(|r| !r.is_empty())
            .map(str::to_owned),
        _ => None,
    }
}

/// `sha256:HEX` of an op's bytes, as LLB keys ops.
fn digest(bytes: &[u8]) -> String {
    hutch_images::Digest::of(bytes).to_string()
}

/// The frontend options with every named context `input:KEY` (a frontend
/// input) replaced by the image it stands for, `docker-image://ID`.
pub fn resolve_inputs(
    opts: &HashMap<String, String>,
    inputs: &HashMap<String, pb::Definition>,
) -> Result<HashMap<String, String>, String> {
    let mut out = opts.clone();
    for (key, value) in opts {
        let (Some(name), Some(input)) =
            (key.strip_prefix("context:"), value.strip_prefix("input:"))
        else {
            continue;
        };
        // A result stands for one image: a build of several platforms
        // would stand each on that one platform's image.
        if opts.get("platform").is_some_and(|p| p.contains(',')) {
            return Err(format!(
                "build context {name}: another target's result as a context of a \
                 multi-platform build is not supported by hutch (build one platform per \
                 target)"
            ));
        }
        let def = inputs
            .get(input)
            .ok_or_else(|| format!("build context {name}: no frontend input {input:?} was sent"))?;
        let image = image_of(def).ok_or_else(|| {
            format!(
                "build context {name}: the frontend input {input:?} is an LLB definition, which \
                 hutch does not run (it takes another target's result, as bake's target: \
                 contexts send them)"
            )
        })?;
        out.insert(key.clone(), format!("{IMAGE_SCHEME}{image}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_result_reads_back_as_its_image() {
        let id = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let def = of_image(id);
        assert_eq!(def.def.len(), 2);
        // Every op has metadata (buildx's DefinitionOp refuses one without).
        for op in &def.def {
            assert!(def.metadata.contains_key(&digest(op)));
        }
        assert_eq!(image_of(&def).as_deref(), Some(id));
        let opts = HashMap::from([
            ("context:base".to_owned(), "input:0-base".to_owned()),
            (
                "context:other".to_owned(),
                "docker-image://busybox".to_owned(),
            ),
            ("target".to_owned(), "app".to_owned()),
        ]);
        let inputs = HashMap::from([("0-base".to_owned(), def)]);
        let resolved = resolve_inputs(&opts, &inputs);
        assert_eq!(
            resolved.as_ref().map(|o| o["context:base"].clone()),
            Ok(format!("docker-image://{id}"))
        );
        assert_eq!(
            resolved.map(|o| o["context:other"].clone()),
            Ok("docker-image://busybox".to_owned())
        );
    }

    #[test]
    fn other_definitions_and_missing_inputs_are_refused() {
        let exec_like = pb::Definition {
            def: vec![pb::Op {
                inputs: vec![pb::Input {
                    digest: "sha256:feed".into(),
                    index: 0,
                }],
                op: None,
            }
            .encode_to_vec()],
            metadata: HashMap::new(),
        };
        assert_eq!(image_of(&exec_like), None);
        assert_eq!(image_of(&pb::Definition::default()), None);
        let opts = HashMap::from([("context:base".to_owned(), "input:k".to_owned())]);
        let inputs = HashMap::from([("k".to_owned(), exec_like)]);
        assert!(resolve_inputs(&opts, &inputs).is_err_and(|e| e.contains("LLB definition")));
        assert!(
            resolve_inputs(&opts, &HashMap::new()).is_err_and(|e| e.contains("no frontend input"))
        );
        let multi = HashMap::from([
            ("context:base".to_owned(), "input:k".to_owned()),
            ("platform".to_owned(), "linux/amd64,linux/arm64".to_owned()),
        ]);
        let inputs = HashMap::from([("k".to_owned(), of_image("sha256:00"))]);
        assert!(resolve_inputs(&multi, &inputs).is_err_and(|e| e.contains("multi-platform")));
    }
}
