//! The core's layering: `api` is a leaf. It converts core values to and
//! from the wire; no other module of the core imports it (outside its
//! tests), so a wire change never reaches a pricing rule and the rules
//! never speak the wire's types.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_core_module_imports_api() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let api = src.join("api");
    let mut offenders = Vec::new();
    for file in files.iter().filter(|f| !f.starts_with(&api)) {
        let text = std::fs::read_to_string(file).expect("read");
        // Production code only: a module's tests (at its end) may build
        // wire values to check a rule against.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (n, line) in code.lines().enumerate() {
            let line = line.trim();
            if line.starts_with("//") {
                continue;
            }
            if line.contains("crate::api") || line.contains("super::api") {
                offenders.push(format!("{}:{}: {line}", file.display(), n + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "core modules import api:\n{}",
        offenders.join("\n")
    );
    assert!(files.len() > 20, "the scan found the sources");
}
