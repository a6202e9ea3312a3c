//! Short import and export names for the SDK's wasm and its wasm-bindgen
//! glue.
//!
//! wasm-bindgen names each import `__wbg_<method>_<16 hex digits>`, under
//! the module `./glimpse_sdk_bg.js`, and each closure export
//! `wasm_bindgen__convert__closures_____invoke__h<16 hex digits>`; every
//! name is written twice (the wasm's import or export section, and the
//! glue), and the hex digits do not compress. [`run`] gives every import
//! and export the glue refers to a name of one or two letters, in both
//! files, and drops the exports the glue never reads (`memory` and `start`
//! keep their names), so that `wasm-opt` can remove what only they kept.
//!
//! First, [`stub_unreached`] gives a body of one `unreachable` to the
//! functions no call reaches but the function table keeps (`wasm-opt` never
//! removes a table entry): `core::fmt`'s, whose addresses the
//! `fmt::Arguments` of `core`'s panic sites take (the panic handler traps
//! without formatting and the SDK formats nothing), and js-sys's JSPI task
//! machinery, whose waker vtable only its `#[no_mangle]` task export (not
//! read by the glue, so dropped) reaches (the SDK spawns no future).

use anyhow::{bail, ensure, Context, Result};

/// The import module wasm-bindgen's `--target web` glue provides.
const MODULE: &str = "./glimpse_sdk_bg.js";
/// The short module name that replaces [`MODULE`].
const SHORT_MODULE: &str = "m";
/// Exports that keep their names: `memory` by convention, `start` because
/// the glue's `start` function shares the name.
const KEPT: &[&str] = &["memory", "start"];

/// Renames in `wasm` (a module from wasm-bindgen, before `wasm-opt`) and in
/// `js` (its glue); returns both rewritten.
pub fn run(wasm: &[u8], js: &str) -> Result<(Vec<u8>, String)> {
    ensure!(
        wasm.len() >= 8 && wasm[..4] == *b"\0asm",
        "not a wasm module"
    );
    let stubbed = stub_unreached(wasm)?;
    let wasm = &stubbed[..];
    let mut renames: Vec<(String, String)> = Vec::new();
    let mut next = 0usize;
    let mut out = wasm[..8].to_vec();
    let mut r = Reader {
        bytes: wasm,
        pos: 8,
    };
    while r.pos < wasm.len() {
        let id = r.byte()?;
        let size = r.leb()? as usize;
        let body = r.take(size)?;
        let section = match id {
            2 => imports(body, js, &mut renames, &mut next)?,
            7 => exports(body, js, &mut renames, &mut next)?,
            _ => body.to_vec(),
        };
        out.push(id);
        push_leb(&mut out, section.len() as u64);
        out.extend_from_slice(&section);
    }
    let mut js = js.to_string();
    for (from, to) in &renames {
        js = replace_word(&js, from, to);
    }
    let quoted = format!("\"{MODULE}\"");
    ensure!(
        js.matches(&quoted).count() == 1,
        "the glue names the module {MODULE} other than once"
    );
    js = js.replace(&quoted, SHORT_MODULE);
    Ok((out, js))
}

/// Whether a function (by its demangled name) is one no call reaches:
/// `core::fmt`'s (a `Formatter` method or a `Display` or `Debug`
/// implementation) or js-sys's JSPI task machinery.
fn is_unreached(name: &str) -> bool {
    let formatting = name.starts_with('<')
        && (name.contains("::fmt::Formatter>::")
            || name.ends_with("::fmt::Display>::fmt")
            || name.ends_with("::fmt::Debug>::fmt"));
    formatting || name.contains("js_sys::futures::jspi::")
}

/// `wasm` with every function [`is_unreached`] names (by the name section)
/// made one `unreachable`; an error when none is found, so that a build
/// whose names changed does not silently keep them.
fn stub_unreached(wasm: &[u8]) -> Result<Vec<u8>> {
    let mut sections = Vec::new();
    let mut r = Reader {
        bytes: wasm,
        pos: 8,
    };
    let mut imported = 0u64;
    let mut stubs = std::collections::HashSet::new();
    while r.pos < wasm.len() {
        let id = r.byte()?;
        let size = r.leb()? as usize;
        let body = r.take(size)?;
        if id == 2 {
            let mut i = Reader {
                bytes: body,
                pos: 0,
            };
            for _ in 0..i.leb()? {
                i.name()?;
                i.name()?;
                if body.get(i.pos) == Some(&0) {
                    imported += 1;
                }
                i.import_desc()?;
            }
        } else if id == 0 {
            let mut c = Reader {
                bytes: body,
                pos: 0,
            };
            if c.name()? == "name" {
                while c.pos < body.len() {
                    let sub = c.byte()?;
                    let len = c.leb()? as usize;
                    let content = c.take(len)?;
                    if sub != 1 {
                        continue;
                    }
                    let mut f = Reader {
                        bytes: content,
                        pos: 0,
                    };
                    for _ in 0..f.leb()? {
                        let index = f.leb()?;
                        if is_unreached(f.name()?) {
                            stubs.insert(index);
                        }
                    }
                }
            }
        }
        sections.push((id, body));
    }
    ensure!(
        !stubs.is_empty(),
        "no unreached function found by name (is the name section gone?)"
    );
    let mut out = wasm[..8].to_vec();
    for (id, body) in sections {
        let body = if id == 10 {
            let mut c = Reader {
                bytes: body,
                pos: 0,
            };
            let n = c.leb()?;
            let mut code = Vec::new();
            push_leb(&mut code, n);
            for i in 0..n {
                let len = c.leb()? as usize;
                let f = c.take(len)?;
                if stubs.contains(&(imported + i)) {
                    // No locals; `unreachable`; `end`.
                    code.extend_from_slice(&[3, 0, 0x00, 0x0b]);
                } else {
                    push_leb(&mut code, len as u64);
                    code.extend_from_slice(f);
                }
            }
            ensure!(c.pos == body.len(), "trailing bytes in the code section");
            code
        } else {
            body.to_vec()
        };
        out.push(id);
        push_leb(&mut out, body.len() as u64);
        out.extend_from_slice(&body);
    }
    Ok(out)
}

/// The import section with short names: every import must come from
/// [`MODULE`] and be defined by the glue.
fn imports(
    body: &[u8],
    js: &str,
    renames: &mut Vec<(String, String)>,
    next: &mut usize,
) -> Result<Vec<u8>> {
    let mut r = Reader {
        bytes: body,
        pos: 0,
    };
    let n = r.leb()?;
    let mut out = Vec::new();
    push_leb(&mut out, n);
    for _ in 0..n {
        let module = r.name()?;
        let field = r.name()?;
        ensure!(
            module == MODULE,
            "import {module}.{field}: not from {MODULE}"
        );
        ensure!(count_word(js, field) > 0, "import {field}: not in the glue");
        let start = r.pos;
        r.import_desc()?;
        let short = short_name(next);
        push_name(&mut out, SHORT_MODULE);
        push_name(&mut out, &short);
        out.extend_from_slice(&body[start..r.pos]);
        renames.push((field.to_string(), short));
    }
    ensure!(r.pos == body.len(), "trailing bytes in the import section");
    Ok(out)
}

/// The export section with short names, without the exports the glue
/// does not read.
fn exports(
    body: &[u8],
    js: &str,
    renames: &mut Vec<(String, String)>,
    next: &mut usize,
) -> Result<Vec<u8>> {
    let mut r = Reader {
        bytes: body,
        pos: 0,
    };
    let n = r.leb()?;
    let mut kept = Vec::new();
    let mut count = 0;
    for _ in 0..n {
        let name = r.name()?;
        let start = r.pos;
        r.byte()?;
        r.leb()?;
        let desc = &body[start..r.pos];
        let name = if KEPT.contains(&name) {
            name.to_string()
        } else if count_word(js, name) == 0 {
            continue;
        } else {
            let short = short_name(next);
            renames.push((name.to_string(), short.clone()));
            short
        };
        push_name(&mut kept, &name);
        kept.extend_from_slice(desc);
        count += 1;
    }
    ensure!(r.pos == body.len(), "trailing bytes in the export section");
    let mut out = Vec::new();
    push_leb(&mut out, count);
    out.extend_from_slice(&kept);
    Ok(out)
}

/// `a`..`z`, `A`..`Z`, then two letters: the `n`th name, `n` advanced.
fn short_name(n: &mut usize) -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let i = *n;
    *n += 1;
    let l = LETTERS.len();
    let mut s = String::new();
    if i >= l {
        s.push(LETTERS[i / l - 1] as char);
    }
    s.push(LETTERS[i % l] as char);
    s
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$'
}

/// The places `word` occurs in `text` as a whole JavaScript identifier.
fn word_at(text: &str, word: &str) -> Vec<usize> {
    let b = text.as_bytes();
    text.match_indices(word)
        .map(|(i, _)| i)
        .filter(|&i| {
            let end = i + word.len();
            (i == 0 || !is_ident(b[i - 1])) && (end == b.len() || !is_ident(b[end]))
        })
        .collect()
}

fn count_word(text: &str, word: &str) -> usize {
    word_at(text, word).len()
}

fn replace_word(text: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for i in word_at(text, from) {
        out.push_str(&text[last..i]);
        out.push_str(to);
        last = i + from.len();
    }
    out.push_str(&text[last..]);
    out
}

fn push_leb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn push_name(out: &mut Vec<u8>, name: &str) {
    push_leb(out, name.len() as u64);
    out.extend_from_slice(name.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8> {
        let b = *self.bytes.get(self.pos).context("truncated wasm")?;
        self.pos += 1;
        Ok(b)
    }

    fn leb(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        bail!("bad LEB128 in wasm")
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).context("truncated wasm")?;
        let s = self.bytes.get(self.pos..end).context("truncated wasm")?;
        self.pos = end;
        Ok(s)
    }

    fn name(&mut self) -> Result<&'a str> {
        let n = self.leb()? as usize;
        std::str::from_utf8(self.take(n)?).context("a wasm name that is not UTF-8")
    }

    fn limits(&mut self) -> Result<()> {
        let flags = self.byte()?;
        self.leb()?;
        if flags & 1 != 0 {
            self.leb()?;
        }
        Ok(())
    }

    /// Skips an import's description (the kinds of wasm 2.0 and tags).
    fn import_desc(&mut self) -> Result<()> {
        match self.byte()? {
            0 => {
                self.leb()?;
            }
            1 => {
                let t = self.byte()?;
                ensure!(t == 0x70 || t == 0x6f, "table import of type {t:#x}");
                self.limits()?;
            }
            2 => self.limits()?,
            3 => {
                let t = self.byte()?;
                ensure!(
                    matches!(t, 0x7f | 0x7e | 0x7d | 0x7c | 0x7b | 0x70 | 0x6f),
                    "global import of type {t:#x}"
                );
                self.byte()?;
            }
            4 => {
                self.byte()?;
                self.leb()?;
            }
            k => bail!("import of kind {k}"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_distinct() {
        let mut n = 0;
        let names: Vec<String> = (0..600).map(|_| short_name(&mut n)).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
        assert_eq!(names[0], "a");
        assert_eq!(names[52], "aa");
    }

    #[test]
    fn unreached_functions_are_known_by_name() {
        assert!(is_unreached(
            "<core[c5930c85a12de822]::fmt::Formatter>::pad"
        ));
        assert!(is_unreached(
            "<core[c5930c85a12de822]::fmt::Formatter>::pad_integral::write_prefix"
        ));
        assert!(is_unreached(
            "<u32 as core[c5930c85a12de822]::fmt::Display>::fmt"
        ));
        assert!(!is_unreached(
            "glimpse_sdk::web::Inner::boot::hf8e412c74d54171a"
        ));
        assert!(!is_unreached("core::fmt::write"));
        assert!(is_unreached(
            "js_sys::futures::jspi::SpawnedTask::wake::h1f026b9659947a37"
        ));
        assert!(is_unreached("core::ptr::drop_in_place<alloc::rc::Rc<js_sys::futures::jspi::SpawnedTask>>::hab3c5b5def8a048c"));
    }

    #[test]
    fn words_are_whole_identifiers() {
        let js = "x.__wbg_a_1(y.__wbg_a_12, __wbg_a_1)";
        assert_eq!(count_word(js, "__wbg_a_1"), 2);
        assert_eq!(replace_word(js, "__wbg_a_1", "q"), "x.q(y.__wbg_a_12, q)");
    }
}
