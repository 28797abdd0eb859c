//! Rebuild the programs when the `bpf-linker` on PATH changes: building them
//! has an undeclared dependency on that binary (aya-template does the same).
fn main() {
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(err) => {
            println!("cargo:warning=bpf-linker not found on PATH ({err}); run `cargo xtask setup`")
        }
    }
}
