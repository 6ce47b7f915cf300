//! GRUB's Reed-Solomon redundancy for an embedded core.img.
//!
//! When grub-bios-setup embeds core.img in a BIOS boot partition, it fills
//! the sectors after it (up to twice the image) with Reed-Solomon parity,
//! so that GRUB's startup code can repair a core.img that other software
//! partly overwrote (a known hazard of the area before the first
//! partition). The code is GRUB's `grub_reed_solomon_add_redundancy`
//! (grub-core/lib/reed_solomon.c), re-expressed: GF(2^8) with polynomial
//! x^8 + x^4 + x^3 + x^2 + 1, data and parity interleaved by byte column
//! across 512-byte sectors, in blocks of at most 200 sectors. The decoder
//! (`grub_reed_solomon_recover`) runs in GRUB, not here.

/// GRUB interleaves by sector: column `i` is byte `i` of every sector.
const SECTOR_BYTES: usize = 512;
/// Data and parity are coded in blocks of at most this many bytes.
const MAX_BLOCK_BYTES: usize = 200 * SECTOR_BYTES;
/// The low byte of the field polynomial (x^8 is implied).
const GF_POLYNOMIAL: u8 = 0x1d;
/// Non-zero elements of GF(256).
const GF_ORDER: usize = 255;

/// Powers of x and their logarithms.
struct Field {
    /// x^i for i in 0..510 (doubled so sums of two logs need no reduction).
    pow: [u8; 2 * GF_ORDER],
    log: [u8; 256],
}

impl Field {
    fn new() -> Field {
        let mut f = Field {
            pow: [0; 2 * GF_ORDER],
            log: [0; 256],
        };
        let mut cur: u8 = 1;
        for i in 0..GF_ORDER {
            f.pow[i] = cur;
            f.pow[i + GF_ORDER] = cur;
            f.log[cur as usize] = i as u8;
            cur = if cur & 0x80 != 0 {
                (cur << 1) ^ GF_POLYNOMIAL
            } else {
                cur << 1
            };
        }
        f
    }

    fn mul(&self, a: u8, b: u8) -> u8 {
        if a == 0 || b == 0 {
            return 0;
        }
        self.pow[self.log[a as usize] as usize + self.log[b as usize] as usize]
    }

    /// `rs` parity symbols for the `data` symbols (GRUB's `rs_encode`).
    fn encode(&self, data: &[u8], rs: usize) -> Vec<u8> {
        // The generator: the product of (X - x^j) for j in 0..rs, highest
        // coefficient first, built as GRUB builds it.
        let mut generator = vec![0u8; rs + 1];
        generator[rs] = 1;
        for j in 0..rs {
            for i in 0..rs {
                generator[i] = if generator[i] != 0 {
                    generator[i + 1] ^ self.pow[j + self.log[generator[i] as usize] as usize]
                } else {
                    generator[i + 1]
                };
            }
            if generator[rs] != 0 {
                generator[rs] = self.pow[j + self.log[generator[rs] as usize] as usize];
            }
        }
        let mut m = data.to_vec();
        m.resize(data.len() + rs, 0);
        for j in 0..data.len() {
            let f = m[j];
            if f != 0 {
                for (i, &g) in generator.iter().enumerate() {
                    m[i + j] ^= self.mul(g, f);
                }
            }
        }
        m.split_off(data.len())
    }

    /// Codes one block: column by column across its sectors.
    fn encode_block(&self, data: &[u8], parity: &mut [u8]) {
        let (s, rs) = (data.len(), parity.len());
        for i in 0..SECTOR_BYTES {
            let ds = (s + SECTOR_BYTES - 1 - i) / SECTOR_BYTES;
            let rr = (rs + SECTOR_BYTES - 1 - i) / SECTOR_BYTES;
            if ds == 0 || rr == 0 {
                continue;
            }
            let column: Vec<u8> = (0..ds).map(|j| data[SECTOR_BYTES * j + i]).collect();
            for (j, p) in self.encode(&column, rr).into_iter().enumerate() {
                parity[SECTOR_BYTES * j + i] = p;
            }
        }
    }
}

/// Writes parity for `buffer[..data_bytes]` into `buffer[data_bytes..]`,
/// exactly as `grub_reed_solomon_add_redundancy(buffer, data_bytes,
/// buffer.len() - data_bytes)` does.
pub fn add_redundancy(buffer: &mut [u8], data_bytes: usize) {
    let field = Field::new();
    let (data, parity) = buffer.split_at_mut(data_bytes);
    let (mut s, mut rs) = (data.len(), parity.len());
    let (mut at, mut rat) = (0, 0);
    while s > 0 && rs > 0 {
        let (mut cs, mut crs) = (s, rs);
        let total = cs + crs;
        if total > MAX_BLOCK_BYTES {
            let sectors = MAX_BLOCK_BYTES / SECTOR_BYTES;
            cs = cs * sectors / total * SECTOR_BYTES;
            crs = crs * sectors / total * SECTOR_BYTES;
        }
        if cs == 0 {
            break;
        }
        field.encode_block(&data[at..at + cs], &mut parity[rat..rat + crs]);
        at += cs;
        rat += crs;
        s -= cs;
        rs -= crs;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GRUB's `pol_evaluate`: the decoder's check; all syndromes are zero
    /// for a valid codeword.
    fn syndromes(f: &Field, codeword: &[u8], rs: usize) -> Vec<u8> {
        (0..rs)
            .map(|log_x| {
                let mut s = 0u8;
                let mut log_xn = 0usize;
                for &c in codeword.iter().rev() {
                    if c != 0 {
                        s ^= f.pow[f.log[c as usize] as usize + log_xn];
                    }
                    log_xn = (log_xn + log_x) % GF_ORDER;
                }
                s
            })
            .collect()
    }

    #[test]
    fn codewords_have_zero_syndromes_and_damage_shows() {
        let f = Field::new();
        let data: Vec<u8> = (0..60u32).map(|i| (i * 37 % 251) as u8).collect();
        let mut codeword = data.clone();
        codeword.extend(f.encode(&data, 40));
        assert!(syndromes(&f, &codeword, 40).iter().all(|&s| s == 0));
        codeword[7] ^= 0x55;
        assert!(syndromes(&f, &codeword, 40).iter().any(|&s| s != 0));
    }

    #[test]
    fn every_byte_column_of_the_buffer_is_a_codeword() {
        let f = Field::new();
        let data_bytes = 3 * 512 + 100;
        let mut buffer: Vec<u8> = (0..data_bytes + 2 * 512).map(|i| (i % 253) as u8).collect();
        add_redundancy(&mut buffer, data_bytes);
        let (data, parity) = buffer.split_at(data_bytes);
        for i in [0usize, 99, 100, 511] {
            let column: Vec<u8> = data.iter().skip(i).step_by(512).copied().collect();
            let checks: Vec<u8> = parity.iter().skip(i).step_by(512).copied().collect();
            let codeword = [column, checks.clone()].concat();
            assert!(
                syndromes(&f, &codeword, checks.len())
                    .iter()
                    .all(|&s| s == 0),
                "column {i}"
            );
        }
    }
}
