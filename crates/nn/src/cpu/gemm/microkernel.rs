//! The operands of the 32×32 bf16 microkernels (`amx::TileGuard::kernel_32x32`,
//! `dpbf16::kernel_32x32`): the packed panels of one block and the block of C they write (their
//! test is `bf16::tests::microkernels_match_loops`).

/// The packed panels of one 32×32 block over `ktiles` k-tiles of 32 (`pack_bf16`'s layout): A
/// is two 16-row panels (`a[0]` rows 0..16, `a[1]` rows 16..32), B two 16-column VNNI panels
/// (`b[0]` columns 0..16, `b[1]` 16..32); in each panel k-tile `t` is the `amx::TILE_ELEMS` (512)
/// elements at `t · 512`.
#[derive(Clone, Copy, Debug)]
pub struct Panels {
    pub a: [*const u16; 2],
    pub b: [*const u16; 2],
    pub ktiles: usize,
}

/// A 32×32 block of f32 at `ptr` with a row stride of `stride` elements; a kernel adds to what
/// is there when `load`, else overwrites it.
#[derive(Clone, Copy, Debug)]
pub struct CBlock {
    pub ptr: *mut f32,
    pub stride: usize,
    pub load: bool,
}
