//! Debug helper: `crop IN OUT x y w h scale` writes an enlarged crop as PNG (never into the repo).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    let n = |i: usize| a[i].parse::<u32>().unwrap_or(0);
    let img = image::open(&a[1])?.to_rgb8();
    let c = image::imageops::crop_imm(&img, n(3), n(4), n(5), n(6)).to_image();
    let s: u32 = n(7).max(1);
    let out = image::imageops::resize(&c, c.width() * s, c.height() * s, image::imageops::FilterType::Nearest);
    out.save(&a[2])?;
    Ok(())
}
