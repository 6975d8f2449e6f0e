//! A fast non-cryptographic 64-bit checksum, for telling a damaged cache file from a good one (not for
//! security): four independent multiply-rotate lanes over 32-byte stripes, so the loop runs at memory speed,
//! then the tail and the length folded in. Any change of one byte changes the result.

const PRIME_A: u64 = 0x9E37_79B1_85EB_CA87;
const PRIME_B: u64 = 0xC2B2_AE3D_27D4_EB4F;
const PRIME_C: u64 = 0x1656_67B1_9E37_79F9;

fn round(lane: u64, word: u64) -> u64 {
    lane.wrapping_add(word.wrapping_mul(PRIME_B)).rotate_left(31).wrapping_mul(PRIME_A)
}

fn word(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes.try_into().expect("8 bytes"))
}

/// The checksum of `data` (the same on every machine: words are read little-endian).
pub fn checksum64(data: &[u8]) -> u64 {
    let mut lanes = [PRIME_A.wrapping_add(PRIME_B), PRIME_B, 0, 0u64.wrapping_sub(PRIME_A)];
    let stripes = data.chunks_exact(32);
    let tail = stripes.remainder();
    for stripe in stripes {
        for (i, lane) in lanes.iter_mut().enumerate() {
            *lane = round(*lane, word(&stripe[8 * i..8 * i + 8]));
        }
    }
    let mut h = lanes[0]
        .rotate_left(1)
        .wrapping_add(lanes[1].rotate_left(7))
        .wrapping_add(lanes[2].rotate_left(12))
        .wrapping_add(lanes[3].rotate_left(18));
    for lane in lanes {
        h = (h ^ round(0, lane)).wrapping_mul(PRIME_A).wrapping_add(PRIME_C);
    }
    h = h.wrapping_add(data.len() as u64);
    let words = tail.chunks_exact(8);
    let bytes = words.remainder();
    for w in words {
        h = (h ^ round(0, word(w))).rotate_left(27).wrapping_mul(PRIME_A).wrapping_add(PRIME_C);
    }
    for &b in bytes {
        h = (h ^ (b as u64).wrapping_mul(PRIME_C)).rotate_left(11).wrapping_mul(PRIME_A);
    }
    // Final avalanche: every input bit reaches every output bit.
    h ^= h >> 33;
    h = h.wrapping_mul(PRIME_B);
    h ^= h >> 29;
    h = h.wrapping_mul(PRIME_C);
    h ^ (h >> 32)
}

#[cfg(test)]
mod tests {
    use super::checksum64;

    #[test]
    fn every_single_byte_change_and_every_length_gives_another_checksum() {
        let data: Vec<u8> = (0..301u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
        let mut seen = std::collections::HashSet::new();
        for len in 0..data.len() {
            assert!(seen.insert(checksum64(&data[..len])), "prefix of length {len} collides");
        }
        let base = checksum64(&data);
        for i in 0..data.len() {
            for bit in 0..8 {
                let mut changed = data.clone();
                changed[i] ^= 1 << bit;
                assert_ne!(checksum64(&changed), base, "flipping bit {bit} of byte {i} went unnoticed");
            }
        }
    }

    #[test]
    fn known_values_pin_the_function_across_versions() {
        // Cache manifests store these numbers: changing the function must be a deliberate, visible act.
        let stripes: Vec<u8> = (0..64u8).collect();
        assert_eq!(checksum64(b""), 0xc816_7590_e3a5_cbeb);
        assert_eq!(checksum64(&stripes), 0xe113_b4ad_5609_1e41);
    }
}
