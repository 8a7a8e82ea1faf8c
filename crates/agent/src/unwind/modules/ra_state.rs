//! Call frame instructions of pointer authentication, made harmless for
//! framehop (aarch64; compiled for tests everywhere).

use crate::elf::u32_at;

/// `DW_CFA_AARCH64_negate_ra_state`, and `DW_CFA_nop`.
const NEGATE_RA_STATE: u8 = 0x2d;
const NOP: u8 = 0x00;

/// Replaces each `DW_CFA_AARCH64_negate_ra_state` instruction of an
/// `.eh_frame` with `DW_CFA_nop` (same length, no operand); returns how many
/// were replaced and how many entries could not be decoded (left as they were).
///
/// Code built with `-mbranch-protection=pac-ret` (the C libraries of several
/// aarch64 distributions) marks where it signs its return address with that
/// instruction. framehop parses tables with gimli without selecting the
/// AArch64 vendor extensions, so it rejects every such function and falls
/// back to frame pointers: frameless functions then vanish from stacks. The
/// signing state only says whether a saved return address carries a
/// pointer-authentication code, which every unwinder here strips anyway
/// (`ADDRESS_MASK`): without it the rules are the same.
///
/// The instructions are decoded, not searched for: the byte 0x2d is also a
/// common operand. An entry holding an instruction not known here is left
/// as it is.
pub(super) fn drop_ra_state_instructions(eh_frame: &mut [u8]) -> (usize, usize) {
    let (mut replaced, mut undecoded) = (0, 0);
    // Each CIE's offset and the size of the addresses in its FDEs.
    let mut cies: Vec<(usize, Option<Pointer>)> = Vec::new();
    let mut at = 0;
    while let Some(length) = u32_at(eh_frame, at) {
        if length == 0 {
            break; // the terminator
        }
        // 64-bit DWARF (a length of 0xffffffff) does not occur in .eh_frame.
        let start = at + 4;
        let Some(end) = start
            .checked_add(length as usize)
            .filter(|&e| e <= eh_frame.len())
        else {
            break;
        };
        let Some(id) = u32_at(eh_frame, start) else {
            break;
        };
        let Some(entry) = eh_frame.get_mut(start + 4..end) else {
            break;
        };
        let done = if id == 0 {
            let cie = parse_cie(entry);
            cies.push((at, cie.map(|c| c.1)));
            cie.and_then(|(instructions, pointer)| {
                rewrite_instructions(&mut entry[instructions..], pointer)
            })
        } else {
            // The CIE pointer counts back from its own position.
            let cie = start.checked_sub(id as usize);
            let pointer = cies.iter().find(|c| Some(c.0) == cie).and_then(|c| c.1);
            pointer.and_then(|pointer| {
                let instructions = fde_instructions(entry, pointer)?;
                rewrite_instructions(&mut entry[instructions..], pointer)
            })
        };
        match done {
            Some(n) => replaced += n,
            None => undecoded += 1,
        }
        at = end;
    }
    (replaced, undecoded)
}

/// How an FDE's addresses are encoded (its CIE's `R` augmentation).
#[derive(Clone, Copy)]
struct Pointer {
    encoding: u8,
    /// Whether FDEs carry augmentation data (the CIE's `z`).
    augmented: bool,
}

/// A CIE body after its id: where its initial instructions start, and how its
/// FDEs encode addresses. None for versions or augmentations not known here.
fn parse_cie(cie: &[u8]) -> Option<(usize, Pointer)> {
    let version = *cie.first()?;
    let nul = 1 + cie.get(1..)?.iter().position(|&b| b == 0)?;
    let augmentation = &cie[1..nul];
    let mut at = nul + 1;
    skip_leb(cie, &mut at)?; // code alignment
    skip_leb(cie, &mut at)?; // data alignment
    match version {
        1 => at += 1,
        3 => skip_leb(cie, &mut at)?,
        _ => return None,
    }
    let mut pointer = Pointer {
        encoding: 0, // DW_EH_PE_absptr
        augmented: false,
    };
    if let Some((&b'z', rest)) = augmentation.split_first() {
        pointer.augmented = true;
        let data_len = read_uleb(cie, &mut at)? as usize;
        let data_end = at.checked_add(data_len)?;
        let mut d = at;
        for &c in rest {
            match c {
                b'R' => {
                    pointer.encoding = *cie.get(d)?;
                    d += 1;
                }
                b'L' => d += 1,
                // The personality routine: its encoding, then the pointer.
                b'P' => {
                    let encoding = *cie.get(d)?;
                    d += 1;
                    skip_pointer(cie, &mut d, encoding)?;
                }
                b'S' | b'B' => {}
                _ => return None,
            }
        }
        at = data_end;
    } else if !augmentation.is_empty() {
        return None;
    }
    (at <= cie.len()).then_some((at, pointer))
}

/// Where an FDE body's instructions start (after its CIE pointer).
fn fde_instructions(fde: &[u8], pointer: Pointer) -> Option<usize> {
    let mut at = 0;
    skip_pointer(fde, &mut at, pointer.encoding)?; // initial location
    skip_pointer(fde, &mut at, pointer.encoding & 0x0f)?; // address range
    if pointer.augmented {
        let len = read_uleb(fde, &mut at)? as usize;
        at = at.checked_add(len)?;
    }
    (at <= fde.len()).then_some(at)
}

/// Replaces each `negate_ra_state` of a sequence of call frame instructions
/// by `nop`, if every instruction decodes; how many.
fn rewrite_instructions(code: &mut [u8], pointer: Pointer) -> Option<usize> {
    let found = ra_state_instructions(code, pointer, |_| {})?;
    if found > 0 {
        ra_state_instructions(code, pointer, |op| *op = NOP);
    }
    Some(found)
}

/// Decodes call frame instructions, calling `each` on every
/// `negate_ra_state` opcode; how many, or None at an instruction not known
/// here.
fn ra_state_instructions(
    code: &mut [u8],
    pointer: Pointer,
    mut each: impl FnMut(&mut u8),
) -> Option<usize> {
    let mut found = 0;
    let mut at = 0;
    while at < code.len() {
        let op = code[at];
        at += 1;
        match op >> 6 {
            1 | 3 => continue,             // advance_loc, restore: operand in the opcode
            2 => skip_leb(code, &mut at)?, // offset
            _ => match op {
                0x00 | 0x0a | 0x0b => {} // nop, remember_state, restore_state
                0x01 => skip_pointer(code, &mut at, pointer.encoding)?, // set_loc
                0x02 => at += 1,         // advance_loc1
                0x03 => at += 2,         // advance_loc2
                0x04 => at += 4,         // advance_loc4
                // restore_extended, undefined, same_value, def_cfa_register,
                // def_cfa_offset, def_cfa_offset_sf, GNU_args_size
                0x06..=0x08 | 0x0d | 0x0e | 0x13 | 0x2e => skip_leb(code, &mut at)?,
                // offset_extended, register, def_cfa, offset_extended_sf,
                // def_cfa_sf, val_offset, val_offset_sf,
                // GNU_negative_offset_extended
                0x05 | 0x09 | 0x0c | 0x11 | 0x12 | 0x14 | 0x15 | 0x2f => {
                    skip_leb(code, &mut at)?;
                    skip_leb(code, &mut at)?;
                }
                0x0f => skip_block(code, &mut at)?, // def_cfa_expression
                // expression, val_expression
                0x10 | 0x16 => {
                    skip_leb(code, &mut at)?;
                    skip_block(code, &mut at)?;
                }
                NEGATE_RA_STATE => {
                    each(&mut code[at - 1]);
                    found += 1;
                }
                _ => return None,
            },
        }
    }
    (at == code.len()).then_some(found)
}

fn read_uleb(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn skip_leb(b: &[u8], at: &mut usize) -> Option<()> {
    read_uleb(b, at).map(|_| ())
}

fn skip_block(b: &[u8], at: &mut usize) -> Option<()> {
    let len = read_uleb(b, at)? as usize;
    *at = at.checked_add(len).filter(|&end| end <= b.len())?;
    Some(())
}

/// Skips a pointer encoded with `encoding` (DW_EH_PE_*; the high bits only
/// say what it is relative to).
fn skip_pointer(b: &[u8], at: &mut usize, encoding: u8) -> Option<()> {
    if encoding == 0xff {
        return Some(()); // DW_EH_PE_omit
    }
    if encoding & 0x70 == 0x50 {
        return None; // DW_EH_PE_aligned: padding not known here
    }
    let size = match encoding & 0x0f {
        0x01 | 0x09 => return skip_leb(b, at), // uleb128, sleb128
        0x02 | 0x0a => 2,
        0x03 | 0x0b => 4,
        0x00 | 0x04 | 0x0c => 8,
        _ => return None,
    };
    *at = at.checked_add(size).filter(|&end| end <= b.len())?;
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unwind::modules::{eh_frame_address, PT_GNU_EH_FRAME, PT_LOAD};

    /// A CIE ("zR", pc-relative sdata4 addresses) and two FDEs, one with an
    /// instruction not known here; the terminator.
    fn table(fde_code: &[&[u8]]) -> Vec<u8> {
        let mut t = Vec::new();
        let cie = [
            &0u32.to_le_bytes()[..],
            &[1, b'z', b'R', 0, 4, 0x78, 30, 1, 0x1b],
            &[0x0c, 31, 0], // def_cfa sp+0
        ]
        .concat();
        t.extend_from_slice(&(cie.len() as u32).to_le_bytes());
        t.extend_from_slice(&cie);
        for code in fde_code {
            let pointer = (t.len() + 4) as u32; // back to the CIE at 0
            let fde = [
                &pointer.to_le_bytes()[..],
                &[0x10, 0, 0, 0, 0x20, 0, 0, 0, 0], // location, range, no augmentation
                code,
            ]
            .concat();
            t.extend_from_slice(&(fde.len() as u32).to_le_bytes());
            t.extend_from_slice(&fde);
        }
        t.extend_from_slice(&0u32.to_le_bytes());
        t
    }

    #[test]
    fn drops_ra_state_instructions_and_nothing_else() {
        let pac: &[u8] = &[
            0x41, 0x2d, // advance_loc 1, negate_ra_state
            0x41, 0x0e, 0x10, // def_cfa_offset 16
            0x9e, 0x02, // offset x30 at cfa-16
            0x0e, 0x2d, // def_cfa_offset 45: an operand
            0x10, 0x1e, 0x02, 0x2d, 0x2d, // expression x30, a 2-byte block
            0x02, 0x2d, // advance_loc1 45
            0x41, 0x2d, 0x00, // negate_ra_state, nop
        ];
        let unknown: &[u8] = &[0x41, 0x2d, 0x3f, 0x2d];
        let mut t = table(&[pac, unknown]);
        let before = t.clone();
        assert_eq!(drop_ra_state_instructions(&mut t), (2, 1));
        let changed: Vec<usize> = (0..t.len()).filter(|&i| t[i] != before[i]).collect();
        let fde = 4 + 4 + 12 + 4 + 4 + 9; // CIE, then the FDE's length, pointer, addresses
        assert_eq!(changed, vec![fde + 1, fde + 17]);
        assert!(changed.iter().all(|&i| t[i] == NOP));
        // A truncated copy: no panic, nothing past it.
        for len in 0..before.len() {
            let mut short = before[..len].to_vec();
            drop_ra_state_instructions(&mut short);
        }
    }

    /// The real tables of every loaded object decode entry by entry, and on
    /// x86_64 nothing is taken for the AArch64 instruction.
    #[test]
    fn decodes_every_entry_of_the_loaded_tables() {
        extern "C" fn each(
            info: *mut libc::dl_phdr_info,
            _: libc::size_t,
            tables: *mut libc::c_void,
        ) -> libc::c_int {
            // SAFETY: dl_iterate_phdr passes a valid info and our pointer;
            // the object's segments stay mapped during the callback.
            unsafe {
                let info = &*info;
                let tables = &mut *(tables as *mut Vec<Vec<u8>>);
                let phdrs = std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into());
                let Some(hdr) = phdrs.iter().find(|p| p.p_type == PT_GNU_EH_FRAME) else {
                    return 0;
                };
                let at = |svma: u64| (info.dlpi_addr + svma) as *const u8;
                let hdr_bytes = std::slice::from_raw_parts(at(hdr.p_vaddr), hdr.p_memsz as usize);
                let Some(eh_frame) = eh_frame_address(hdr_bytes, hdr.p_vaddr) else {
                    return 0;
                };
                let Some(segment) = phdrs.iter().find(|p| {
                    p.p_type == PT_LOAD
                        && p.p_vaddr <= eh_frame
                        && eh_frame < p.p_vaddr + p.p_filesz
                }) else {
                    return 0;
                };
                let len = segment.p_vaddr + segment.p_filesz - eh_frame;
                tables.push(std::slice::from_raw_parts(at(eh_frame), len as usize).to_vec());
            }
            0
        }
        let mut tables: Vec<Vec<u8>> = Vec::new();
        // SAFETY: the callback only reads the objects' mapped segments.
        unsafe { libc::dl_iterate_phdr(Some(each), (&mut tables as *mut Vec<Vec<u8>>).cast()) };
        assert!(tables.len() >= 2, "{} tables", tables.len());
        for t in &mut tables {
            let (replaced, undecoded) = drop_ra_state_instructions(t);
            assert_eq!(undecoded, 0);
            if cfg!(target_arch = "x86_64") {
                assert_eq!(replaced, 0);
            }
        }
    }
}
