//! A Dockerfile from anywhere (an API client's build context): parsing and
//! planning must end in Ok or a ParseError, never a panic.
#![no_main]

use hutch_builder::{parse, plan, BuildArgs};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(df) = parse("Dockerfile", data) else {
        return;
    };
    let _ = df.check_failure();
    for stage in df.stages() {
        let _ = df.stage_by_name(&stage.name.clone().unwrap_or_default());
    }
    let _ = plan(&df, None, &BuildArgs::default(), None);
});
