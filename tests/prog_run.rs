//! BPF_PROG_RUN fixtures for every packet path of `docs/dataplane.md`.

use hive_dataplane::testing::prog_run::{ProgRun, require_root};

#[test]
fn programs_pass_the_verifier() {
    if !require_root("programs_pass_the_verifier") {
        return;
    }
    let mut h = ProgRun::load().expect("load object");
    for name in ["xdp_from_underlay", "tc_from_task", "xdp_floor"] {
        let out = h.run(name, &[0u8; 64]);
        if let Err(e) = &out {
            panic!("{e}");
        }
    }
}
