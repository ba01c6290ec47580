//! What planx checks of a raft snapshot archive (sealed sums, a whole gzip'd tar, nothing after
//! its end), and the one-pass read of a saved snapshot for its upload: hashed, checked and handed
//! on in chunks, its tail held back until the file proved whole and unchanged.

use std::collections::VecDeque;
use std::io::{BufRead, Read};

use sha2::{Digest, Sha256};

/// How much of a saved snapshot is read (and handed on) at once: 256 KiB reads keep pace with
/// curl (4 KiB reads ran at a quarter of it).
const READ_CHUNK: usize = 256 * 1024;

/// How much of the file's end is held back until the file is verified. The archive ends in it
/// (the tar's end blocks and the gzip trailer are its last few hundred bytes), so a server cannot
/// finish reading an archive planx has not verified.
const HOLD_BACK: usize = 256 * 1024;

/// Where the chunks of an upload go; an `Err` cuts the upload short.
pub type UploadChunks = tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>;

/// Why a verified read did not hand the whole file on.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamRefusal {
    /// The file is not the snapshot it should be; the upload was cut before its end.
    Refused(String),
    /// The file cannot be read.
    Unreadable(String),
    /// The upload stopped taking chunks (the server answered early: its answer says why).
    UploadEnded,
}

/// Walk a raft snapshot archive (a gzip'd tar) to its end: it must carry a non-empty
/// `SHA256SUMS.sealed`, and its gzip trailer (length and CRC) must match what it holds.
/// Reads exactly the archive from `reader`, nothing after it.
pub fn walk_archive(reader: &mut impl BufRead) -> Result<(), String> {
    let mut decoder = flate2::bufread::GzDecoder::new(reader);
    let mut sums = None;
    {
        let mut archive = tar::Archive::new(&mut decoder);
        let entries = archive
            .entries()
            .map_err(|e| format!("not a snapshot archive: {e}"))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("not a snapshot archive: {e}"))?;
            let name = entry
                .path()
                .map(|p| p.to_string_lossy().to_string())
                .unwrap_or_default();
            if name.trim_start_matches("./") == "SHA256SUMS.sealed" {
                sums = Some(entry.size());
            }
        }
    }
    // What follows the tar's end block, to the gzip trailer, which the decoder checks.
    std::io::copy(&mut decoder, &mut std::io::sink())
        .map_err(|e| format!("the snapshot archive is damaged: {e}"))?;
    match sums {
        None => Err("the archive has no SHA256SUMS.sealed: the snapshot cannot be verified".into()),
        Some(0) => Err("SHA256SUMS.sealed is empty: the snapshot cannot be verified".into()),
        Some(_) => Ok(()),
    }
}

/// A snapshot file is a whole archive ([`walk_archive`]) with nothing after it.
pub fn check_snapshot_archive(path: &std::path::Path) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    check_snapshot_stream(&mut std::io::BufReader::new(file))
}

/// A snapshot stream is a whole archive ([`walk_archive`]) with nothing after it.
pub fn check_snapshot_stream(reader: &mut impl BufRead) -> Result<(), String> {
    walk_archive(reader)?;
    let after = reader
        .fill_buf()
        .map_err(|e| format!("cannot read: {e}"))?
        .len();
    if after > 0 {
        return Err(AFTER_THE_END.into());
    }
    Ok(())
}

const AFTER_THE_END: &str =
    "the file goes on after the snapshot archive's end: it is not the snapshot that was saved";

/// Read `file` once, hashing it and walking its archive, and hand it to `upload` as it goes,
/// holding its last 256 KiB (`HOLD_BACK`) until the archive proved whole with nothing after it
/// and, when `expected_sha256` is given, the digest matched. Then the tail follows; on a refusal
/// an error chunk does, which cuts the upload short, so the server never receives the file whole.
/// Blocking: run it on a thread of its own.
pub fn stream_verified(
    file: std::fs::File,
    expected_sha256: Option<&str>,
    upload: UploadChunks,
) -> Result<(), StreamRefusal> {
    let send = move |chunk| upload.blocking_send(chunk).is_ok();
    let mut source = HoldingReader::new(file, HeldUpload::new(send));
    let verdict = verify(&mut source, expected_sha256);
    if source.upload.ended() {
        return Err(StreamRefusal::UploadEnded);
    }
    match verdict {
        Ok(()) => {
            if source.upload.release() {
                Ok(())
            } else {
                Err(StreamRefusal::UploadEnded)
            }
        }
        Err(refusal) => {
            source
                .upload
                .cut("planx refused the snapshot file before the upload's end");
            Err(refusal)
        }
    }
}

fn verify<S: FnMut(std::io::Result<bytes::Bytes>) -> bool>(
    source: &mut HoldingReader<S>,
    expected_sha256: Option<&str>,
) -> Result<(), StreamRefusal> {
    if let Err(message) = walk_archive(source) {
        // An ended upload also stops the walk; `stream_verified` reports that before this.
        return Err(match source.read_error.take() {
            Some(error) => StreamRefusal::Unreadable(error),
            None => StreamRefusal::Refused(message),
        });
    }
    if source.has_more().map_err(StreamRefusal::Unreadable)? {
        return Err(StreamRefusal::Refused(AFTER_THE_END.into()));
    }
    if let Some(expected) = expected_sha256 {
        let actual = planc::hex::encode(&source.hasher.clone().finalize());
        if actual != expected {
            return Err(StreamRefusal::Refused(format!(
                "SHA-256 is {actual}, the journal recorded {expected}: the file changed since it was saved"
            )));
        }
    }
    Ok(())
}

/// Chunks on their way to an upload, each handed on once [`HOLD_BACK`] bytes followed it: the
/// stream's tail stays here until the stream is verified, then goes on ([`HeldUpload::release`])
/// or is replaced by an error that cuts the upload short ([`HeldUpload::cut`]). `send` hands one
/// chunk on, and says `false` once the upload has ended.
pub(crate) struct HeldUpload<S> {
    held: VecDeque<bytes::Bytes>,
    held_bytes: usize,
    send: S,
    ended: bool,
}

impl<S: FnMut(std::io::Result<bytes::Bytes>) -> bool> HeldUpload<S> {
    pub(crate) fn new(send: S) -> HeldUpload<S> {
        HeldUpload {
            held: VecDeque::new(),
            held_bytes: 0,
            send,
            ended: false,
        }
    }

    /// Hold `chunk`, and hand on the held chunks that more than [`HOLD_BACK`] bytes now follow;
    /// `false` once the upload has ended (what comes after is dropped).
    pub(crate) fn push(&mut self, chunk: bytes::Bytes) -> bool {
        if self.ended {
            return false;
        }
        self.held_bytes += chunk.len();
        self.held.push_back(chunk);
        while let Some(oldest) = self.held.front()
            && self.held_bytes - oldest.len() >= HOLD_BACK
        {
            let chunk = self.held.pop_front().expect("a held chunk");
            self.held_bytes -= chunk.len();
            if !(self.send)(Ok(chunk)) {
                self.ended = true;
                self.held.clear();
                return false;
            }
        }
        true
    }

    /// Whether the upload stopped taking chunks (the server answered early: its answer says why).
    pub(crate) fn ended(&self) -> bool {
        self.ended
    }

    /// The stream was verified: hand on the held tail; `false` if the upload had ended.
    pub(crate) fn release(mut self) -> bool {
        while !self.ended
            && let Some(chunk) = self.held.pop_front()
        {
            self.ended = !(self.send)(Ok(chunk));
        }
        !self.ended
    }

    /// The stream was refused: end the upload with an error instead of its tail.
    pub(crate) fn cut(mut self, why: &str) {
        if !self.ended {
            (self.send)(Err(std::io::Error::other(why.to_string())));
        }
    }
}

/// A [`BufRead`] over the file that hashes every chunk it reads and holds it for the upload.
struct HoldingReader<S> {
    file: std::fs::File,
    hasher: Sha256,
    /// The unread part of the newest chunk.
    current: bytes::Bytes,
    end_of_file: bool,
    upload: HeldUpload<S>,
    /// A read error, kept whole (the archive walk sees only that reading failed).
    read_error: Option<String>,
}

impl<S: FnMut(std::io::Result<bytes::Bytes>) -> bool> HoldingReader<S> {
    fn new(file: std::fs::File, upload: HeldUpload<S>) -> HoldingReader<S> {
        HoldingReader {
            file,
            hasher: Sha256::new(),
            current: bytes::Bytes::new(),
            end_of_file: false,
            upload,
            read_error: None,
        }
    }

    /// The next chunk of the file (empty at its end).
    fn read_chunk(&mut self) -> std::io::Result<bytes::Bytes> {
        let mut buffer = vec![0u8; READ_CHUNK];
        let mut filled = 0;
        while filled < READ_CHUNK {
            match self.file.read(&mut buffer[filled..]) {
                Ok(0) => break,
                Ok(read) => filled += read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        buffer.truncate(filled);
        Ok(bytes::Bytes::from(buffer))
    }

    /// Whether the file holds more than has been read, reading ahead without hashing or
    /// handing anything on.
    fn has_more(&mut self) -> Result<bool, String> {
        if !self.current.is_empty() {
            return Ok(true);
        }
        if self.end_of_file {
            return Ok(false);
        }
        let mut probe = [0u8; 1];
        loop {
            match self.file.read(&mut probe) {
                Ok(read) => return Ok(read > 0),
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return Err(format!("cannot read: {error}")),
            }
        }
    }
}

impl<S: FnMut(std::io::Result<bytes::Bytes>) -> bool> Read for HoldingReader<S> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        read_through_buffer(self, buffer)
    }
}

/// `Read::read` for a reader whose own buffer is the source: copy what `fill_buf` offers.
pub(crate) fn read_through_buffer(
    reader: &mut impl BufRead,
    buffer: &mut [u8],
) -> std::io::Result<usize> {
    let available = reader.fill_buf()?;
    let count = buffer.len().min(available.len());
    buffer[..count].copy_from_slice(&available[..count]);
    reader.consume(count);
    Ok(count)
}

impl<S: FnMut(std::io::Result<bytes::Bytes>) -> bool> BufRead for HoldingReader<S> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.current.is_empty() && !self.end_of_file {
            let chunk = self.read_chunk().inspect_err(|error| {
                self.read_error = Some(format!("cannot read: {error}"));
            })?;
            if chunk.is_empty() {
                self.end_of_file = true;
            } else {
                self.hasher.update(&chunk);
                self.current = chunk.clone();
                if !self.upload.push(chunk) {
                    return Err(std::io::Error::other("the upload ended"));
                }
            }
        }
        Ok(&self.current)
    }

    fn consume(&mut self, amount: usize) {
        let _ = self.current.split_to(amount.min(self.current.len()));
    }
}
