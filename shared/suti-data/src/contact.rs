//! Contact sheets: grids of images on a light background, for docs and reports.

use crate::image::RgbaImage;

/// Lays out rows of images (rows may differ in length) with `pad` pixels between them. Images in
/// one sheet should share a size; smaller ones are placed top-left in their cell.
pub fn contact_sheet(rows: &[Vec<RgbaImage>], pad: u32) -> RgbaImage {
    let cell_w = rows.iter().flatten().map(|i| i.width).max().unwrap_or(1);
    let cell_h = rows.iter().flatten().map(|i| i.height).max().unwrap_or(1);
    let cols = rows.iter().map(Vec::len).max().unwrap_or(1).max(1) as u32;
    let width = pad + cols * (cell_w + pad);
    let height = pad + rows.len().max(1) as u32 * (cell_h + pad);
    let mut sheet = RgbaImage::new(width, height);
    for px in sheet.pixels.chunks_exact_mut(4) {
        px.copy_from_slice(&[246, 246, 246, 255]);
    }
    for (r, row) in rows.iter().enumerate() {
        for (c, img) in row.iter().enumerate() {
            let (ox, oy) = (
                pad + c as u32 * (cell_w + pad),
                pad + r as u32 * (cell_h + pad),
            );
            for y in 0..img.height {
                for x in 0..img.width {
                    sheet.put(ox + x, oy + y, img.get(x, y));
                }
            }
        }
    }
    sheet
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_land_where_expected() {
        let mut a = RgbaImage::new(2, 2);
        a.put(1, 1, [9, 9, 9, 255]);
        let sheet = contact_sheet(&[vec![a.clone(), a.clone()], vec![a]], 1);
        assert_eq!((sheet.width, sheet.height), (7, 7));
        assert_eq!(sheet.get(2, 2), [9, 9, 9, 255]);
        assert_eq!(sheet.get(5, 2), [9, 9, 9, 255]);
        assert_eq!(sheet.get(2, 5), [9, 9, 9, 255]);
        assert_eq!(sheet.get(5, 5), [246, 246, 246, 255]);
    }
}
