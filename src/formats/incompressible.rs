//! A cheap test for blocks that will not compress, run before the expensive
//! compressor.
//!
//! Already-compressed data (.gz, .xz, .zst, .png, firmware) costs a strong
//! compressor as much time as text does, only to be stored raw in the end.
//! Two tests must both say "incompressible": the order-0 entropy (a byte
//! histogram) must be near 8 bits, so an entropy coder alone would save less
//! than [`MAX_ENTROPY_SAVING`]; and lz4, which finds repeats at a tenth of a
//! strong compressor's cost, must find none worth having. A block that passes
//! both could at best have shrunk by a fraction of a percent, which the writers
//! accept (stored raw, as the format allows) for skipping the compressor.
//! The answer depends on the block alone, so images stay reproducible
//! whatever the thread count.

/// Blocks smaller than this are left to the compressor: too small to matter.
const MIN_BLOCK_BYTES: usize = 4096;
/// 8 - entropy (bits per byte), over 8: what order-0 coding could save.
const MAX_ENTROPY_SAVING: f64 = 0.004;
/// lz4 must not get the block below this fraction of its size.
const LZ4_MIN_RATIO: f64 = 0.995;

/// Part of the block caches' namespaces: bump when the test changes, since
/// it changes which blocks are stored raw.
pub const REVISION: u32 = 1;

/// True when `block` is almost certainly not worth compressing.
/// `scratch` is reused between calls.
pub fn looks_incompressible(block: &[u8], scratch: &mut Vec<u8>) -> bool {
    if block.len() < MIN_BLOCK_BYTES {
        return false;
    }
    if entropy_saving(block) > MAX_ENTROPY_SAVING {
        return false;
    }
    scratch.resize(lz4_flex::block::get_maximum_output_size(block.len()), 0);
    match lz4_flex::block::compress_into(block, scratch) {
        Ok(n) => n as f64 >= block.len() as f64 * LZ4_MIN_RATIO,
        Err(_) => false,
    }
}

/// What an ideal order-0 coder would save, as a fraction of the block.
fn entropy_saving(block: &[u8]) -> f64 {
    // Four histograms break the store-to-load dependency on repeated bytes.
    let mut counts = [[0u32; 256]; 4];
    let mut chunks = block.chunks_exact(4);
    for c in &mut chunks {
        counts[0][c[0] as usize] += 1;
        counts[1][c[1] as usize] += 1;
        counts[2][c[2] as usize] += 1;
        counts[3][c[3] as usize] += 1;
    }
    for &b in chunks.remainder() {
        counts[0][b as usize] += 1;
    }
    let n = block.len() as f64;
    let bits: f64 = (0..256)
        .map(|i| counts.iter().map(|c| c[i]).sum::<u32>())
        .filter(|&c| c > 0)
        .map(|c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum();
    (8.0 - bits) / 8.0
}

/// Incompressible bytes, the same for the same seed (xorshift64): input for
/// the writers' tests, the integration tests' `support::noise` and benches.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_incompressible_and_text_or_repeated_noise_is_not() {
        let mut scratch = Vec::new();
        assert!(looks_incompressible(&noise(131072, 3), &mut scratch));
        let text: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .take(131072)
            .collect();
        assert!(!looks_incompressible(&text, &mut scratch));
        // High entropy, but the second half repeats the first: lz4 sees it.
        let half = noise(32768, 9);
        let repeated = [half.clone(), half].concat();
        assert!(!looks_incompressible(&repeated, &mut scratch));
        // Base64-like: no repeats, but only 6 bits per byte.
        let b64: Vec<u8> = noise(65536, 5)
            .iter()
            .map(|b| b'A' + (b & 63) % 58)
            .collect();
        assert!(!looks_incompressible(&b64, &mut scratch));
        assert!(
            !looks_incompressible(&noise(1000, 3), &mut scratch),
            "small"
        );
    }
}
