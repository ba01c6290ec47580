//! The files a compilation reads and positions inside them.

use std::path::{Path, PathBuf};

/// Index of a file in a [`SourceMap`].
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
pub struct FileId(pub u32);

/// A position in a file: 1-based line and column (in characters) and a length in characters.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
pub struct Span {
    pub file: FileId,
    pub line: u32,
    pub column: u32,
    pub len: u32,
}

impl Span {
    pub fn new(file: FileId, line: u32, column: u32, len: u32) -> Span {
        Span {
            file,
            line: line.max(1),
            column: column.max(1),
            len,
        }
    }

    /// The start of a file, for problems with the file as a whole.
    pub fn file_start(file: FileId) -> Span {
        Span::new(file, 1, 1, 0)
    }
}

/// One file: its path as the user named it, its text, and where each line starts.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    /// Byte offset of the start of every line, so a line is found in constant time.
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(path: impl Into<PathBuf>, text: String) -> SourceFile {
        // YAML's line breaks: LF, CRLF, and a CR alone (the parser counts lines by them).
        let bytes = text.as_bytes();
        let mut line_starts = vec![0];
        for (at, &byte) in bytes.iter().enumerate() {
            let breaks = byte == b'\n' || (byte == b'\r' && bytes.get(at + 1) != Some(&b'\n'));
            if breaks {
                line_starts.push(at + 1);
            }
        }
        SourceFile {
            path: path.into(),
            text,
            line_starts,
        }
    }

    /// How many lines the file has (a last line without a break counts; an empty file has one).
    pub fn line_count(&self) -> u32 {
        self.line_starts.len() as u32
    }

    /// The text of a 1-based line, without its line break.
    pub fn line(&self, line: u32) -> Option<&str> {
        let index = line.checked_sub(1)? as usize;
        let start = *self.line_starts.get(index)?;
        let end = self
            .line_starts
            .get(index + 1)
            .map_or(self.text.len(), |&next| next);
        let line = &self.text[start..end];
        let line = line.strip_suffix('\n').unwrap_or(line);
        Some(line.strip_suffix('\r').unwrap_or(line))
    }
}

/// Every file of one compilation: plans, modules, parameter files.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    pub fn add(&mut self, path: impl Into<PathBuf>, text: String) -> FileId {
        self.files.push(SourceFile::new(path, text));
        FileId(self.files.len() as u32 - 1)
    }

    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    pub fn path(&self, id: FileId) -> &Path {
        &self.get(id).path
    }

    /// The paths of every file, in the order they were added.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|f| f.path.as_path())
    }

    pub fn find(&self, path: &Path) -> Option<FileId> {
        self.files
            .iter()
            .position(|f| f.path == path)
            .map(|i| FileId(i as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_break_where_yaml_breaks_them() {
        let file = SourceFile::new("f.yaml", "a\nb\r\nc\rd\n".to_string());
        let lines: Vec<&str> = (1..=file.line_count())
            .filter_map(|n| file.line(n))
            .collect();
        assert_eq!(lines, ["a", "b", "c", "d", ""]);
        assert_eq!(file.line(6), None);
        assert_eq!(file.line(0), None);
        let empty = SourceFile::new("e.yaml", String::new());
        assert_eq!((empty.line_count(), empty.line(1)), (1, Some("")));
    }
}
