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
//! without formatting and the SDK formats nothing), js-sys's JSPI task
//! machinery, whose waker vtable only its `#[no_mangle]` task export (not
//! read by the glue, so dropped) reaches (the SDK spawns no future), and
//! the `call_once` entry of every closure's vtable (the SDK's boxed
//! closures are all called by `call_mut`).
//!
//! Then [`blank_panic_text`] zeroes the text only a panic would read: the
//! source paths of panic locations and the messages of `core`'s and
//! `alloc`'s panic sites (the panic handler traps and reads neither), and
//! the digit pairs of `core::fmt`'s integer formatting, whose functions
//! are stubbed. Addresses stay as they are; `wasm-opt` drops the zeroes.

use anyhow::{bail, ensure, Context, Result};

/// The import module wasm-bindgen's `--target web` glue provides.
const MODULE: &str = "./glimpse_sdk_bg.js";
/// The short module name that replaces [`MODULE`].
const SHORT_MODULE: &str = "m";
/// Exports that keep their names: `memory` by convention, `start` because
/// the glue's `start` function shares the name.
const KEPT: &[&str] = &["memory", "start"];

/// The messages of `core`'s and `alloc`'s panic sites linked into the SDK
/// (allocation failure, `Vec` bounds and capacity, `RefCell` borrows, a
/// poisoned `LazyCell`, division by zero, `unreachable!`): only the panic
/// handler, which never reads them, receives them. Not wasm-bindgen's
/// `throw_str` messages: those reach JavaScript as an `Error`.
const PANIC_MESSAGES: &[&str] = &[
    "memory allocation of ",
    " bytes failed",
    "removal index (is ",
    "swap_remove index (is ",
    ") should be < len (is ",
    "Tried to shrink to a larger capacity",
    "capacity overflow",
    "LazyCell instance has previously been poisoned",
    "attempt to divide by zero",
    "RefCell already mutably borrowed",
    "RefCell already borrowed",
    "internal error: entered unreachable code",
];

/// `core::fmt`'s table of decimal digit pairs, `00` to `99`.
const DIGIT_PAIRS: &str = "0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839404142434445464748495051525354555657585960\
616263646566676869707172737475767778798081828384858687888990919293949596979899";

/// The sections of `wasm` after its 8-byte preamble, in order: each id,
/// where its body starts in `wasm`, and the body.
fn sections(wasm: &[u8]) -> Result<Vec<(u8, usize, &[u8])>> {
    let mut r = Reader {
        bytes: wasm,
        pos: 8,
    };
    let mut found = Vec::new();
    while r.pos < wasm.len() {
        let id = r.byte()?;
        let size = r.leb()? as usize;
        let start = r.pos;
        found.push((id, start, r.take(size)?));
    }
    Ok(found)
}

/// Renames in `wasm` (a module from wasm-bindgen, before `wasm-opt`) and in
/// `js` (its glue), and blanks the panic text (`source_prefixes`: how the
/// source paths of panic locations start); returns both rewritten.
pub fn run(wasm: &[u8], js: &str, source_prefixes: &[String]) -> Result<(Vec<u8>, String)> {
    ensure!(
        wasm.len() >= 8 && wasm[..4] == *b"\0asm",
        "not a wasm module"
    );
    let stubbed = blank_panic_text(&stub_unreached(wasm)?, source_prefixes)?;
    let wasm = &stubbed[..];
    let mut renames: Vec<(String, String)> = Vec::new();
    let mut next = 0usize;
    let mut out = wasm[..8].to_vec();
    for (id, _, body) in sections(wasm)? {
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
/// implementation), js-sys's JSPI task machinery, or the `call_once` entry
/// of a closure's vtable. Every closure the SDK boxes is a `dyn FnMut`
/// (wasm-bindgen's callbacks, `Promise::new`'s executor), called through
/// `call_mut`; only a `Box<dyn FnOnce>` called by value would use
/// `call_once`, and the SDK has none.
fn is_unreached(name: &str) -> bool {
    let formatting = name.starts_with('<')
        && (name.contains("::fmt::Formatter>::")
            || name.ends_with("::fmt::Display>::fmt")
            || name.ends_with("::fmt::Debug>::fmt"));
    formatting
        || name.contains("js_sys::futures::jspi::")
        || name.starts_with("core::ops::function::FnOnce::call_once{{vtable.shim}}")
}

/// `wasm` with every function [`is_unreached`] names (by the name section)
/// made one `unreachable`; an error when none is found, so that a build
/// whose names changed does not silently keep them.
fn stub_unreached(wasm: &[u8]) -> Result<Vec<u8>> {
    let sections = sections(wasm)?;
    let mut imported = 0u64;
    let mut stubs = std::collections::HashSet::new();
    for &(id, _, body) in &sections {
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
    }
    ensure!(
        !stubs.is_empty(),
        "no unreached function found by name (is the name section gone?)"
    );
    let mut out = wasm[..8].to_vec();
    for (id, _, body) in sections {
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

/// The places in `data` of the panic text [`blank_panic_text`] zeroes: each
/// [`PANIC_MESSAGES`] entry, [`DIGIT_PAIRS`], and each source path (one of
/// `source_prefixes`, then path characters up to the first `.rs`).
fn panic_text(data: &[u8], source_prefixes: &[String]) -> Vec<std::ops::Range<usize>> {
    let is_path = |c: u8| c.is_ascii_alphanumeric() || b"_-./".contains(&c);
    let mut found = Vec::new();
    let texts = PANIC_MESSAGES.iter().copied().chain([DIGIT_PAIRS]);
    for text in texts {
        found.extend(find_all(data, text.as_bytes()).map(|at| at..at + text.len()));
    }
    for prefix in source_prefixes {
        for at in find_all(data, prefix.as_bytes()) {
            let mut end = at + prefix.len();
            while end < data.len() && is_path(data[end]) && !data[..end].ends_with(b".rs") {
                end += 1;
            }
            if data[..end].ends_with(b".rs") {
                found.push(at..end);
            }
        }
    }
    found
}

/// The offsets where `needle` starts in `haystack`.
fn find_all<'a>(haystack: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(move |(_, w)| *w == needle)
        .map(|(at, _)| at)
}

/// `wasm` with the [`panic_text`] of its data segments zeroed; an error
/// when no source path is found, so that a build whose paths changed does
/// not silently keep them.
fn blank_panic_text(wasm: &[u8], source_prefixes: &[String]) -> Result<Vec<u8>> {
    let mut out = wasm.to_vec();
    let mut paths = 0;
    for (id, start, body) in sections(wasm)? {
        if id != 11 {
            continue;
        }
        let mut d = Reader {
            bytes: &wasm[..start + body.len()],
            pos: start,
        };
        for _ in 0..d.leb()? {
            match d.leb()? {
                0 => d.const_offset()?,
                1 => {}
                2 => {
                    d.leb()?;
                    d.const_offset()?;
                }
                k => bail!("data segment of kind {k}"),
            }
            let len = d.leb()? as usize;
            let at = d.pos;
            let data = d.take(len)?;
            for range in panic_text(data, source_prefixes) {
                paths += usize::from(data[range.clone()].ends_with(b".rs"));
                out[at + range.start..at + range.end].fill(0);
            }
        }
    }
    ensure!(
        paths > 0,
        "no panic location's source path found (did the paths change?)"
    );
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

    /// Skips a data segment's offset, an `i32.const` expression.
    fn const_offset(&mut self) -> Result<()> {
        ensure!(
            self.byte()? == 0x41,
            "a data segment offset that is not i32.const"
        );
        self.leb()?;
        ensure!(
            self.byte()? == 0x0b,
            "a data segment offset of more than i32.const"
        );
        Ok(())
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
        assert!(is_unreached(
            "core::ops::function::FnOnce::call_once{{vtable.shim}}::hacfc63530af63809"
        ));
        assert!(!is_unreached(
            "core::ops::function::impls::<impl core::ops::function::FnMut<A> for &mut F>::call_mut::h644e3de0f07eab37"
        ));
    }

    #[test]
    fn panic_text_is_found_by_prefix_and_message() {
        let data = b"keep\x01sdk/src/queue.rs\x02keep/rustc/0abc/library/alloc/src/vec/mod.rs\
capacity overflowsdk/src/not-a-path\x03";
        let prefixes = ["sdk/src/".to_string(), "/rustc/".to_string()];
        let found: Vec<&[u8]> = panic_text(data, &prefixes)
            .into_iter()
            .map(|r| &data[r])
            .collect();
        assert_eq!(
            found,
            [
                &b"capacity overflow"[..],
                b"sdk/src/queue.rs",
                b"/rustc/0abc/library/alloc/src/vec/mod.rs",
            ]
        );
    }

    #[test]
    fn digit_pairs_are_00_to_99() {
        let pairs: String = (0..100).map(|n| format!("{n:02}")).collect();
        assert_eq!(DIGIT_PAIRS, pairs);
    }

    #[test]
    fn words_are_whole_identifiers() {
        let js = "x.__wbg_a_1(y.__wbg_a_12, __wbg_a_1)";
        assert_eq!(count_word(js, "__wbg_a_1"), 2);
        assert_eq!(replace_word(js, "__wbg_a_1", "q"), "x.q(y.__wbg_a_12, q)");
    }
}
