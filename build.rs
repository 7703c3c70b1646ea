//! Gives libttm.so its SONAME, so programs linked with -lttm depend on
//! libttm.so.1 and packages can ship libttm.so as the development link.

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libttm.so.1");
    println!("cargo:rerun-if-changed=build.rs");
}
