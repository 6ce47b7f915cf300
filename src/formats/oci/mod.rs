// TEMPORARY placeholder until feat-oci merges (deleted before the merge).
pub struct FlattenSummary {
    pub manifest_digest: String,
}
pub fn flatten<W: std::io::Write>(
    _l: &std::path::Path,
    _t: Option<&str>,
    _a: &str,
    _w: W,
) -> anyhow::Result<FlattenSummary> {
    anyhow::bail!("pending")
}
