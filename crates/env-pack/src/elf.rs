//! The library search paths (`DT_RPATH`, `DT_RUNPATH`) of ELF executables and shared objects,
//! read from the dynamic segment the way the loader finds them: program headers, then
//! `PT_DYNAMIC`, then the string table mapped through the `PT_LOAD` segments.
//!
//! Only the headers and the few bytes needed are read, so checking the thousands of files of an
//! environment costs a few reads per ELF file, not a read of each file. Anything that does not
//! parse (a truncated test fixture, an ELF core file) is reported as "not an ELF object": this
//! check guards relocation, and such a file has nothing for the loader to relocate.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const DT_NULL: u64 = 0;
const DT_STRTAB: u64 = 5;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;

/// The search paths of one ELF object; `None` where the tag is absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchPaths {
    /// `DT_RPATH`.
    pub rpath: Option<String>,
    /// `DT_RUNPATH`.
    pub runpath: Option<String>,
}

impl SearchPaths {
    /// Every entry that is not relative to `$ORIGIN`, with the tag it came from.
    #[must_use]
    pub fn non_origin_entries(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (tag, value) in [("RPATH", &self.rpath), ("RUNPATH", &self.runpath)] {
            let Some(value) = value else { continue };
            for entry in value.split(':').filter(|entry| !entry.is_empty()) {
                if !(entry.starts_with("$ORIGIN") || entry.starts_with("${ORIGIN}")) {
                    out.push((tag, entry.to_string()));
                }
            }
        }
        out
    }
}

/// Whether the first bytes of a file are the ELF magic.
#[must_use]
pub fn has_elf_magic(head: &[u8]) -> bool {
    head.starts_with(b"\x7fELF")
}

#[derive(Clone, Copy)]
struct Layout {
    is_64: bool,
    big_endian: bool,
}

impl Layout {
    fn u16(self, bytes: &[u8], at: usize) -> Option<u16> {
        let b: [u8; 2] = bytes.get(at..at + 2)?.try_into().ok()?;
        Some(if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    fn u32(self, bytes: &[u8], at: usize) -> Option<u32> {
        let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    fn u64(self, bytes: &[u8], at: usize) -> Option<u64> {
        let b: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
        Some(if self.big_endian {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        })
    }

    /// A word: 8 bytes in ELF64, 4 in ELF32.
    fn word(self, bytes: &[u8], at: usize) -> Option<u64> {
        if self.is_64 {
            self.u64(bytes, at)
        } else {
            self.u32(bytes, at).map(u64::from)
        }
    }
}

struct Segment {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

/// The search paths of the ELF executable or shared object at `path`; `Ok(None)` when the file
/// is not one (or does not parse as one).
pub fn search_paths(path: &Path) -> std::io::Result<Option<SearchPaths>> {
    let mut file = fs_err::File::open(path)?;
    let mut header = [0u8; 64];
    let read = read_up_to(&mut file, &mut header)?;
    Ok(parse(&mut file, &header[..read]))
}

fn read_up_to(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut read = 0;
    while read < buffer.len() {
        match reader.read(&mut buffer[read..])? {
            0 => break,
            n => read += n,
        }
    }
    Ok(read)
}

fn read_at(file: &mut (impl Read + Seek), offset: u64, len: u64) -> Option<Vec<u8>> {
    // Headers and dynamic sections are small; a huge length means a corrupt file.
    if len > 16 << 20 {
        return None;
    }
    file.seek(SeekFrom::Start(offset)).ok()?;
    let mut buffer = vec![0u8; usize::try_from(len).ok()?];
    let read = read_up_to(file, &mut buffer).ok()?;
    (read == buffer.len()).then_some(buffer)
}

fn parse(file: &mut (impl Read + Seek), header: &[u8]) -> Option<SearchPaths> {
    if header.len() < 52 || !has_elf_magic(header) {
        return None;
    }
    let layout = Layout {
        is_64: match header[4] {
            1 => false,
            2 => true,
            _ => return None,
        },
        big_endian: match header[5] {
            1 => false,
            2 => true,
            _ => return None,
        },
    };
    if layout.is_64 && header.len() < 64 {
        return None;
    }
    let kind = layout.u16(header, 16)?;
    if kind != ET_EXEC && kind != ET_DYN {
        return None;
    }
    let (phoff, phentsize, phnum) = if layout.is_64 {
        (
            layout.u64(header, 32)?,
            layout.u16(header, 54)?,
            layout.u16(header, 56)?,
        )
    } else {
        (
            u64::from(layout.u32(header, 28)?),
            layout.u16(header, 42)?,
            layout.u16(header, 44)?,
        )
    };
    let minimum = if layout.is_64 { 56 } else { 32 };
    if usize::from(phentsize) < minimum {
        return None;
    }
    let table = read_at(file, phoff, u64::from(phentsize) * u64::from(phnum))?;
    let mut segments = Vec::new();
    for index in 0..usize::from(phnum) {
        let at = index * usize::from(phentsize);
        let segment = if layout.is_64 {
            Segment {
                kind: layout.u32(&table, at)?,
                offset: layout.u64(&table, at + 8)?,
                vaddr: layout.u64(&table, at + 16)?,
                filesz: layout.u64(&table, at + 32)?,
            }
        } else {
            Segment {
                kind: layout.u32(&table, at)?,
                offset: u64::from(layout.u32(&table, at + 4)?),
                vaddr: u64::from(layout.u32(&table, at + 8)?),
                filesz: u64::from(layout.u32(&table, at + 16)?),
            }
        };
        segments.push(segment);
    }
    let Some(dynamic) = segments.iter().find(|s| s.kind == PT_DYNAMIC) else {
        // A static executable: no search paths.
        return Some(SearchPaths::default());
    };
    let dynamic = read_at(file, dynamic.offset, dynamic.filesz)?;
    let entry_size = if layout.is_64 { 16 } else { 8 };
    let word = entry_size / 2;
    let (mut strtab, mut rpath, mut runpath) = (None, None, None);
    for at in (0..dynamic.len() / entry_size).map(|i| i * entry_size) {
        let tag = layout.word(&dynamic, at)?;
        let value = layout.word(&dynamic, at + word)?;
        match tag {
            DT_NULL => break,
            DT_STRTAB => strtab = Some(value),
            DT_RPATH => rpath = Some(value),
            DT_RUNPATH => runpath = Some(value),
            _ => {}
        }
    }
    if rpath.is_none() && runpath.is_none() {
        return Some(SearchPaths::default());
    }
    // DT_STRTAB is a virtual address: find the loaded segment holding it.
    let strtab = strtab?;
    let load = segments
        .iter()
        .find(|s| s.kind == PT_LOAD && s.vaddr <= strtab && strtab < s.vaddr + s.filesz)?;
    let strtab_offset = strtab - load.vaddr + load.offset;
    let mut string_at = |offset: u64| read_string(file, strtab_offset + offset);
    Some(SearchPaths {
        rpath: match rpath {
            Some(offset) => Some(string_at(offset)?),
            None => None,
        },
        runpath: match runpath {
            Some(offset) => Some(string_at(offset)?),
            None => None,
        },
    })
}

fn read_string(file: &mut (impl Read + Seek), offset: u64) -> Option<String> {
    file.seek(SeekFrom::Start(offset)).ok()?;
    let mut out = Vec::new();
    let mut chunk = [0u8; 256];
    // Search paths are short; 64 KiB without a NUL is a corrupt file.
    while out.len() < 64 << 10 {
        let read = file.read(&mut chunk).ok()?;
        if read == 0 {
            return None;
        }
        if let Some(end) = chunk[..read].iter().position(|b| *b == 0) {
            out.extend_from_slice(&chunk[..end]);
            return Some(String::from_utf8_lossy(&out).into_owned());
        }
        out.extend_from_slice(&chunk[..read]);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF object: header, a `PT_LOAD` covering the file, a `PT_DYNAMIC`, the dynamic
    /// entries and the string table.
    fn synthetic(is_64: bool, big_endian: bool, tags: &[(u64, &str)]) -> Vec<u8> {
        let put16 = |v: u16| {
            if big_endian {
                v.to_be_bytes().to_vec()
            } else {
                v.to_le_bytes().to_vec()
            }
        };
        let put32 = |v: u32| {
            if big_endian {
                v.to_be_bytes().to_vec()
            } else {
                v.to_le_bytes().to_vec()
            }
        };
        let put_word = |v: u64| {
            if is_64 {
                if big_endian {
                    v.to_be_bytes().to_vec()
                } else {
                    v.to_le_bytes().to_vec()
                }
            } else {
                put32(u32::try_from(v).unwrap())
            }
        };
        let (ehsize, phentsize) = if is_64 { (64u64, 56u64) } else { (52, 32) };
        let vaddr_base = 0x1000u64;
        let phoff = ehsize;
        let dyn_offset = phoff + 2 * phentsize;
        let entry = if is_64 { 16 } else { 8 };
        let dyn_len = entry * (tags.len() as u64 + 2);
        let strtab_offset = dyn_offset + dyn_len;
        let mut strtab = vec![0u8];
        let mut entries = Vec::new();
        for (tag, text) in tags {
            entries.push((*tag, strtab.len() as u64));
            strtab.extend_from_slice(text.as_bytes());
            strtab.push(0);
        }
        let total = strtab_offset + strtab.len() as u64;
        let mut out = vec![0x7f, b'E', b'L', b'F', if is_64 { 2 } else { 1 }];
        out.push(if big_endian { 2 } else { 1 });
        out.resize(16, 0);
        out.extend(put16(ET_DYN));
        out.extend(put16(62));
        out.extend(put32(1));
        out.extend(put_word(0)); // entry
        out.extend(put_word(phoff));
        out.extend(put_word(0)); // shoff
        out.extend(put32(0)); // flags
        out.extend(put16(u16::try_from(ehsize).unwrap()));
        out.extend(put16(u16::try_from(phentsize).unwrap()));
        out.extend(put16(2));
        out.extend(put16(0));
        out.extend(put16(0));
        out.extend(put16(0));
        assert_eq!(out.len() as u64, ehsize);
        for (kind, offset, len) in [(PT_LOAD, 0, total), (PT_DYNAMIC, dyn_offset, dyn_len)] {
            if is_64 {
                out.extend(put32(kind));
                out.extend(put32(4));
                out.extend(put_word(offset));
                out.extend(put_word(vaddr_base + offset));
                out.extend(put_word(vaddr_base + offset));
                out.extend(put_word(len));
                out.extend(put_word(len));
                out.extend(put_word(8));
            } else {
                out.extend(put32(kind));
                out.extend(put32(u32::try_from(offset).unwrap()));
                out.extend(put32(u32::try_from(vaddr_base + offset).unwrap()));
                out.extend(put32(u32::try_from(vaddr_base + offset).unwrap()));
                out.extend(put32(u32::try_from(len).unwrap()));
                out.extend(put32(u32::try_from(len).unwrap()));
                out.extend(put32(4));
                out.extend(put32(4));
            }
        }
        out.extend(put_word(DT_STRTAB));
        out.extend(put_word(vaddr_base + strtab_offset));
        for (tag, offset) in entries {
            out.extend(put_word(tag));
            out.extend(put_word(offset));
        }
        out.extend(put_word(DT_NULL));
        out.extend(put_word(0));
        out.extend(strtab);
        out
    }

    fn parse_bytes(bytes: &[u8]) -> Option<SearchPaths> {
        let mut cursor = std::io::Cursor::new(bytes.to_vec());
        let head = &bytes[..bytes.len().min(64)];
        parse(&mut cursor, head)
    }

    #[test]
    fn reads_runpath_and_rpath_in_every_layout() {
        for (is_64, big_endian) in [(true, false), (false, false), (true, true), (false, true)] {
            let bytes = synthetic(
                is_64,
                big_endian,
                &[(DT_RUNPATH, "$ORIGIN/../lib"), (DT_RPATH, "/opt/build/lib")],
            );
            let paths = parse_bytes(&bytes).unwrap();
            assert_eq!(paths.runpath.as_deref(), Some("$ORIGIN/../lib"));
            assert_eq!(paths.rpath.as_deref(), Some("/opt/build/lib"));
            assert_eq!(
                paths.non_origin_entries(),
                vec![("RPATH", "/opt/build/lib".to_string())]
            );
        }
    }

    #[test]
    fn absent_tags_and_non_elf() {
        let bytes = synthetic(true, false, &[]);
        assert_eq!(parse_bytes(&bytes), Some(SearchPaths::default()));
        assert_eq!(
            parse_bytes(b"#!/bin/sh\necho hello, this is not an ELF file at all\n"),
            None
        );
        // Truncated: the program headers are cut off.
        assert_eq!(parse_bytes(&bytes[..70]), None);
    }

    #[test]
    fn origin_entries_pass() {
        let paths = SearchPaths {
            rpath: None,
            runpath: Some("$ORIGIN:${ORIGIN}/../lib::".into()),
        };
        assert!(paths.non_origin_entries().is_empty());
    }

    /// Agrees with `patchelf` on a real binary with an absolute RUNPATH (pyenv's libpython)
    /// and on one without (this machine's `/bin/sh` target).
    #[test]
    fn real_files() {
        let libpython = Path::new("/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0");
        if libpython.is_file() {
            let paths = search_paths(libpython).unwrap().unwrap();
            let runpath = paths.runpath.or(paths.rpath).unwrap();
            assert!(runpath.starts_with('/'), "{runpath}");
            if let Ok(output) = std::process::Command::new("patchelf")
                .arg("--print-rpath")
                .arg(libpython)
                .output()
            {
                assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), runpath);
            }
        }
        let sh = fs_err::canonicalize("/bin/sh").unwrap();
        let paths = search_paths(&sh).unwrap().unwrap();
        assert!(paths.non_origin_entries().is_empty(), "{paths:?}");
    }
}
