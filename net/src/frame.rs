//! Kafka's framing: every request and response is a 4-byte big-endian size, then that many
//! bytes. The size is checked against `socket.request.max.bytes` before any of the body is
//! read, so a hostile or broken client cannot make the broker allocate what it claims.

use bytes::BytesMut;
use futures_lite::{AsyncRead, AsyncReadExt};

/// The smallest request: api key (2), api version (2), correlation id (4).
pub const MIN_REQUEST_LEN: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("request size {size} is outside 8..={max} (socket.request.max.bytes)")]
    BadSize { size: i32, max: usize },
    #[error("connection closed mid-frame")]
    Truncated,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads one request frame. `Ok(None)` is a clean close between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_size: usize,
) -> Result<Option<BytesMut>, FrameError> {
    let mut size = [0u8; 4];
    let mut filled = 0;
    while filled < size.len() {
        match reader.read(&mut size[filled..]).await? {
            0 if filled == 0 => return Ok(None),
            0 => return Err(FrameError::Truncated),
            n => filled += n,
        }
    }
    let size = i32::from_be_bytes(size);
    let len = usize::try_from(size).unwrap_or(0);
    if len < MIN_REQUEST_LEN || len > max_size {
        return Err(FrameError::BadSize {
            size,
            max: max_size,
        });
    }
    let mut body = BytesMut::zeroed(len);
    reader.read_exact(&mut body).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            FrameError::Truncated
        } else {
            FrameError::Io(e)
        }
    })?;
    Ok(Some(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8], max: usize) -> Result<Option<BytesMut>, FrameError> {
        futures_lite::future::block_on(read_frame(&mut &bytes[..], max))
    }

    #[test]
    fn reads_a_frame_and_a_clean_close() {
        let mut input = 8i32.to_be_bytes().to_vec();
        input.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&read(&input, 100).unwrap().unwrap()[..], &input[4..]);
        assert!(read(&[], 100).unwrap().is_none());
    }

    #[test]
    fn refuses_bad_sizes_before_reading_the_body() {
        for size in [-1i32, 0, 7, 101, i32::MAX] {
            let input = size.to_be_bytes();
            assert!(matches!(read(&input, 100), Err(FrameError::BadSize { .. })));
        }
    }

    #[test]
    fn a_short_body_is_truncated() {
        let mut input = 20i32.to_be_bytes().to_vec();
        input.extend_from_slice(&[0; 5]);
        assert!(matches!(read(&input, 100), Err(FrameError::Truncated)));
        assert!(matches!(read(&[0, 0], 100), Err(FrameError::Truncated)));
    }
}
