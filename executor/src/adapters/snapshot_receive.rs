//! A raft snapshot received on one thread: each chunk, as it arrives, is hashed, written, walked
//! as an archive and (for a transfer) handed to the target's upload with the stream's tail held
//! back until the archive proved whole. The kernel keeps receiving into the socket while the
//! thread hashes and writes, and the disk writes while the next chunks arrive; no chunk is
//! handed between threads.

use std::io::{BufRead, IoSlice, Read, Write};
use std::pin::Pin;

use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};

use super::snapshot_archive::{
    HeldUpload, UploadChunks, check_snapshot_stream, read_through_buffer,
};
use super::vault::SnapshotFile;

/// A response body, chunk by chunk.
pub(crate) type Body = Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// How much is written at once (one vectored write of the chunks received since the last).
const WRITE_BATCH: usize = 1 << 20;

/// How much is written before the kernel is asked to start writing it to disk.
const WRITEBACK_EVERY: u64 = 8 << 20;

/// Why a snapshot was not received whole and sound, most telling first.
pub(crate) enum ReceiveFailure {
    /// The download broke off: a cut stream explains a truncated archive.
    Transport(reqwest::Error),
    /// The file could not be written or synced.
    Write(std::io::Error),
    /// The archive was refused ([`check_snapshot_stream`]'s message).
    Refused(String),
}

/// Receive `body` into `file` on this thread, which `runtime` (a current-thread runtime, not
/// entered here) drives whenever it waits for a chunk, together with whatever else runs on it
/// (a transfer's upload). The archive is walked as the chunks arrive, and the file synced once
/// at the end. With `upload`, every chunk goes on to it as well, the stream's tail only once
/// the archive proved whole ([`HeldUpload`]); otherwise an error chunk cuts the upload short.
/// `report` sees the bytes received, once a MiB.
pub(crate) fn receive(
    runtime: &tokio::runtime::Runtime,
    body: Body,
    file: std::fs::File,
    upload: Option<UploadChunks>,
    report: tokio::sync::watch::Sender<u64>,
) -> Result<SnapshotFile, ReceiveFailure> {
    let upload = upload
        .map(|sender| HeldUpload::new(move |chunk| runtime.block_on(sender.send(chunk)).is_ok()));
    let mut receiver = Receiver {
        runtime,
        body,
        current: bytes::Bytes::new(),
        ended: false,
        hasher: Sha256::new(),
        file,
        unwritten: Vec::new(),
        unwritten_bytes: 0,
        received: 0,
        written: 0,
        writeback_from: 0,
        report,
        upload,
        transport_error: None,
        write_error: None,
    };
    let checked = check_snapshot_stream(&mut receiver);
    let failure = if let Some(error) = receiver.transport_error.take() {
        Some(ReceiveFailure::Transport(error))
    } else if let Some(error) = receiver.write_error.take() {
        Some(ReceiveFailure::Write(error))
    } else if let Err(message) = checked {
        Some(ReceiveFailure::Refused(message))
    } else {
        receiver.finish().err().map(ReceiveFailure::Write)
    };
    let upload = receiver.upload.take();
    match failure {
        Some(failure) => {
            if let Some(upload) = upload {
                upload.cut("the snapshot was not received whole, or its archive was refused");
            }
            Err(failure)
        }
        None => {
            // An upload that ended early has the target's answer, which its caller reads.
            if let Some(upload) = upload {
                upload.release();
            }
            Ok(SnapshotFile {
                sha256: planc::hex::encode(&receiver.hasher.finalize()),
                bytes: receiver.received,
            })
        }
    }
}

/// The body as one [`BufRead`] for the archive walk; every chunk is hashed, queued for the
/// file and held for the upload as it is fetched.
struct Receiver<'r, S> {
    runtime: &'r tokio::runtime::Runtime,
    body: Body,
    /// The unread part of the newest chunk.
    current: bytes::Bytes,
    ended: bool,
    hasher: Sha256,
    file: std::fs::File,
    unwritten: Vec<bytes::Bytes>,
    unwritten_bytes: usize,
    received: u64,
    written: u64,
    writeback_from: u64,
    report: tokio::sync::watch::Sender<u64>,
    upload: Option<HeldUpload<S>>,
    /// Kept whole: the archive walk sees only that reading failed.
    transport_error: Option<reqwest::Error>,
    write_error: Option<std::io::Error>,
}

impl<S: FnMut(std::io::Result<bytes::Bytes>) -> bool> Receiver<'_, S> {
    fn take(&mut self, chunk: bytes::Bytes) -> std::io::Result<()> {
        self.hasher.update(&chunk);
        self.received += chunk.len() as u64;
        if let Some(upload) = &mut self.upload {
            upload.push(chunk.clone());
        }
        self.unwritten_bytes += chunk.len();
        self.unwritten.push(chunk.clone());
        self.current = chunk;
        if self.unwritten_bytes >= WRITE_BATCH {
            self.write_out()?;
        }
        Ok(())
    }

    /// Write the queued chunks in one vectored write (they are not copied), and start the
    /// disk's writeback every [`WRITEBACK_EVERY`] bytes.
    fn write_out(&mut self) -> std::io::Result<()> {
        let mut slices: Vec<IoSlice> = self.unwritten.iter().map(|c| IoSlice::new(c)).collect();
        let mut slices = slices.as_mut_slice();
        while !slices.is_empty() {
            let written = self.file.write_vectored(slices)?;
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut slices, written);
        }
        self.written += self.unwritten_bytes as u64;
        self.unwritten.clear();
        self.unwritten_bytes = 0;
        // The disk writes while the next chunks arrive, and nobody waits for it here: the one
        // sync at the end has little left to wait for.
        if self.written - self.writeback_from >= WRITEBACK_EVERY {
            start_writeback(
                &self.file,
                self.writeback_from,
                self.written - self.writeback_from,
            );
            self.writeback_from = self.written;
        }
        // Once a MiB: a report per chunk woke the caller's runtime hundreds of times more.
        let _ = self.report.send(self.received);
        Ok(())
    }

    /// The rest written, and the file synced.
    fn finish(&mut self) -> std::io::Result<()> {
        self.write_out()?;
        self.file.sync_all()
    }
}

impl<S: FnMut(std::io::Result<bytes::Bytes>) -> bool> BufRead for Receiver<'_, S> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.current.is_empty() && !self.ended {
            match self.runtime.block_on(self.body.next()) {
                Some(Ok(chunk)) => {
                    if let Err(error) = self.take(chunk) {
                        let reading = std::io::Error::other(format!("cannot write: {error}"));
                        self.write_error = Some(error);
                        return Err(reading);
                    }
                }
                Some(Err(error)) => {
                    self.transport_error = Some(error);
                    return Err(std::io::Error::other("the download broke off"));
                }
                None => self.ended = true,
            }
        }
        Ok(&self.current)
    }

    fn consume(&mut self, amount: usize) {
        let _ = self.current.split_to(amount.min(self.current.len()));
    }
}

impl<S: FnMut(std::io::Result<bytes::Bytes>) -> bool> Read for Receiver<'_, S> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        read_through_buffer(self, buffer)
    }
}

/// Ask the kernel to start writing a range of `file` to disk without waiting for it
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`). Only a head start for the final sync, which
/// still decides durability: where the call is unavailable or fails, nothing is lost.
#[cfg(target_os = "linux")]
fn start_writeback(file: &std::fs::File, offset: u64, length: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(length)) = (i64::try_from(offset), i64::try_from(length)) else {
        return;
    };
    // SAFETY: the descriptor is open for the duration of the call (borrowed from `file`), and
    // sync_file_range reads no memory of this process.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset,
            length,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &std::fs::File, _offset: u64, _length: u64) {}
