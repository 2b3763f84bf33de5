//! Publishing a file's catalogue entry on Discord, `<file-id>.manifest.json`, so `recover` can
//! rebuild the file from another machine.

use anyhow::{Context, Result};

use super::Session;
use crate::catalog::remote::{manifest_name, RemoteManifest};
use crate::catalog::{FileManifest, MessageRef};
use crate::store::{PartStore, PutPart};

/// Posts the file's manifest to Discord so `recover` can find it from another machine, then
/// deletes the one it replaces (in that order, so Discord always holds one).
pub async fn publish_manifest(s: &Session, file: &mut FileManifest) -> Result<()> {
    let parts = s.catalog.load_parts(&file.id)?.parts;
    let body = serde_json::to_vec(&RemoteManifest::of(file, &parts))?;
    let channel_id = file.channels[0];
    let posted = s
        .store()?
        .put_part(PutPart {
            channel_id,
            filename: manifest_name(&file.id),
            // A new nonce per version (the same one would return the old message); retries of
            // this post share it.
            nonce: format!("{}.m{}", file.id, crate::catalog::new_file_id()),
            data: body.into(),
            reload: None,
        })
        .await
        .with_context(|| {
            format!(
                "{} is stored, but its manifest could not be posted to Discord for `recover`; run `resume {}` to post it",
                file.id, file.id
            )
        })?;
    let old = file.remote_manifest.replace(MessageRef {
        channel_id: posted.channel_id,
        message_id: posted.message_id,
    });
    s.catalog.save_file(file)?;
    if let Some(old) = old {
        s.store()?
            .delete_message(old.channel_id, old.message_id)
            .await?;
    }
    Ok(())
}
