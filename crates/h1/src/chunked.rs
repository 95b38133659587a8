//! The chunked transfer coding (RFC 9112 §7.1), read as bytes arrive: the decoder hands out
//! the data and says where the body ends. It is strict where laxness lets two servers disagree
//! on that end: sizes are hex digits only (at most 16), every line ends in CRLF, and a chunk's
//! data is followed by CRLF exactly. Extensions and trailers are read and dropped, bounded.

use std::ops::Range;

/// Bytes of extensions on one size line, and of all trailer fields together.
const MAX_EXTENSION_BYTES: usize = 4096;
const MAX_TRAILER_BYTES: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading a size's hex digits (`digits` so far).
    Size {
        digits: u8,
    },
    /// After the size: an extension, up to the CR.
    Extension {
        length: usize,
    },
    /// The LF of a size line; then `size` bytes of data (0: the last chunk).
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final blank line).
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

/// Where a chunked body is, across reads.
#[derive(Clone, Debug)]
pub struct Decoder {
    state: State,
    /// The current chunk's size, then what is left of its data.
    size: u64,
    trailer: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self {
            state: State::Size { digits: 0 },
            size: 0,
            trailer: 0,
        }
    }
}

/// Why a chunked body cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the chunked body is malformed: {0}")]
pub struct ChunkError(&'static str);

/// What one call made of its input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Bytes of the input used.
    pub consumed: usize,
    /// Data found, as a range of the input (it ends the step).
    pub data: Option<Range<usize>>,
}

impl Decoder {
    /// Whether the last chunk and the trailer have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Reads from `input` up to the next piece of data (or the end of the body, or of the
    /// input). Call again with what was not consumed.
    pub fn decode(&mut self, input: &[u8]) -> Result<Step, ChunkError> {
        let mut at = 0;
        while at < input.len() {
            if self.state == State::Data {
                let available = (input.len() - at) as u64;
                let take = usize::try_from(self.size.min(available)).unwrap_or(usize::MAX);
                self.size -= take as u64;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                return Ok(Step {
                    consumed: at + take,
                    data: Some(at..at + take),
                });
            }
            let byte = input[at];
            at += 1;
            self.state = self.next(byte)?;
            if self.state == State::Done {
                break;
            }
        }
        Ok(Step {
            consumed: at,
            data: None,
        })
    }

    /// The state after one control byte (any state but `Data`).
    fn next(&mut self, byte: u8) -> Result<State, ChunkError> {
        Ok(match self.state {
            State::Size { digits } => match byte {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    if digits == 16 {
                        return Err(ChunkError("a chunk size of more than 16 digits"));
                    }
                    let value = char::from(byte).to_digit(16).unwrap_or(0);
                    self.size = (self.size << 4) | u64::from(value);
                    State::Size { digits: digits + 1 }
                }
                _ if digits == 0 => return Err(ChunkError("a chunk size that is not hex")),
                b'\r' => State::SizeLf,
                b';' | b' ' | b'\t' => State::Extension { length: 1 },
                _ => return Err(ChunkError("a chunk size followed by something else")),
            },
            State::Extension { length } => match byte {
                b'\r' => State::SizeLf,
                _ if length >= MAX_EXTENSION_BYTES => {
                    return Err(ChunkError("a chunk extension too long"));
                }
                b'\t' | b' '..=b'~' | 0x80..=0xff => State::Extension { length: length + 1 },
                _ => return Err(ChunkError("a control character in a chunk extension")),
            },
            State::SizeLf => match byte {
                b'\n' if self.size == 0 => State::TrailerStart,
                b'\n' => State::Data,
                _ => return Err(ChunkError("a size line not ended by CRLF")),
            },
            State::DataCr => match byte {
                b'\r' => State::DataLf,
                _ => return Err(ChunkError("a chunk longer than its size")),
            },
            State::DataLf => match byte {
                b'\n' => {
                    self.size = 0;
                    State::Size { digits: 0 }
                }
                _ => return Err(ChunkError("a chunk not ended by CRLF")),
            },
            State::TrailerStart => match byte {
                b'\r' => State::EndLf,
                _ => self.trailer_byte(byte)?,
            },
            State::TrailerLine => match byte {
                b'\r' => State::TrailerLf,
                _ => self.trailer_byte(byte)?,
            },
            State::TrailerLf | State::EndLf => match byte {
                b'\n' if self.state == State::EndLf => State::Done,
                b'\n' => State::TrailerStart,
                _ => return Err(ChunkError("a trailer line not ended by CRLF")),
            },
            State::Data | State::Done => {
                return Err(ChunkError("bytes after the end of the body"));
            }
        })
    }

    fn trailer_byte(&mut self, byte: u8) -> Result<State, ChunkError> {
        self.trailer += 1;
        if self.trailer > MAX_TRAILER_BYTES {
            return Err(ChunkError("trailer fields too long"));
        }
        match byte {
            b'\t' | b' '..=b'~' | 0x80..=0xff => Ok(State::TrailerLine),
            _ => Err(ChunkError("a control character in a trailer field")),
        }
    }
}

/// Writes the size line of a chunk of `length` bytes (`length` > 0) into `out`.
pub fn size_line(length: usize, out: &mut Vec<u8>) {
    use std::io::Write;
    let _ = write!(out, "{length:x}\r\n");
}

/// The last chunk, with no trailer.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    /// The data of `body` fed `step` bytes at a time, and whether the body ended.
    fn decode_by(body: &[u8], step: usize) -> Result<(Vec<u8>, usize, bool), ChunkError> {
        let mut decoder = Decoder::default();
        let mut data = Vec::new();
        let mut used = 0;
        for piece in body.chunks(step) {
            let mut at = 0;
            while at < piece.len() && !decoder.is_done() {
                let step = decoder.decode(&piece[at..])?;
                if let Some(range) = step.data {
                    data.extend_from_slice(&piece[at..][range]);
                }
                at += step.consumed;
            }
            used += at;
            if decoder.is_done() {
                break;
            }
        }
        Ok((data, used, decoder.is_done()))
    }

    #[test]
    fn chunks_extensions_and_trailers_are_read_whatever_the_reads() {
        let body = b"5;name=value\r\nhello\r\nA\r\n, world!!!\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, body.len()] {
            let (data, used, done) = decode_by(body, step).unwrap();
            assert_eq!(data, b"hello, world!!!");
            assert!(done);
            assert_eq!(
                used,
                body.len() - 4,
                "the next request is left alone (step {step})"
            );
        }
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for body in [
            &b"x\r\nhello\r\n0\r\n\r\n"[..],
            b"\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"11111111111111111\r\n",
            b"-5\r\nhello\r\n",
            b"0x5\r\nhello\r\n",
            b"5;a\x00b\r\nhello\r\n",
            b"0\r\nTrailer: x\n\r\n",
        ] {
            assert!(
                decode_by(body, 1).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        let long_extension = format!("1;{}\r\n", "e".repeat(MAX_EXTENSION_BYTES));
        assert!(decode_by(long_extension.as_bytes(), 64).is_err());
    }

    #[test]
    fn an_unfinished_body_is_not_done() {
        let (data, _, done) = decode_by(b"5\r\nhel", 2).unwrap();
        assert_eq!(data, b"hel");
        assert!(!done);
    }
}
