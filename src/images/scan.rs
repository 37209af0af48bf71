//! `strata image scan`: per image, the tag its policy selects from the registry, every marker's
//! value now, and what it would become. Typed data; `report::image` renders it.

use std::path::Path;

use serde::Serialize;

use super::markers::{self, Found, MarkerForm};
use super::policy::{Selector, TagCounts};
use super::registry::{Registry, RegistryError, RegistryOptions};
use crate::stack::images::Image;
use crate::stack::Stack;

/// One marker of an image, now and as the policy wants it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MarkerState {
    /// Relative to the stack directory.
    pub file: String,
    pub line: usize,
    pub form: MarkerForm,
    pub current: String,
    /// The value it would get; `None` when it is up to date (or nothing was selected).
    pub wanted: Option<String>,
}

/// Why an image could not be scanned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScanError {
    /// `unreachable`, `auth`, `not_found`, `status`, `invalid`, `credentials`, `ca`.
    pub kind: String,
    pub message: String,
}

impl From<&RegistryError> for ScanError {
    fn from(e: &RegistryError) -> ScanError {
        ScanError {
            kind: e.kind().to_string(),
            message: e.to_string(),
        }
    }
}

/// One image's scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageScan {
    pub image: String,
    pub repository: String,
    pub policy: String,
    /// The tag the policy selects; `None` when no tag matches or the registry failed.
    pub latest: Option<String>,
    pub tags: TagCounts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ScanError>,
    pub markers: Vec<MarkerState>,
}

impl ImageScan {
    pub fn updates(&self) -> usize {
        self.markers.iter().filter(|m| m.wanted.is_some()).count()
    }
}

/// Every image's scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScanReport {
    pub stack: String,
    pub images: Vec<ImageScan>,
}

impl ScanReport {
    /// Markers that would change.
    pub fn updates(&self) -> usize {
        self.images.iter().map(ImageScan::updates).sum()
    }

    pub fn errors(&self) -> usize {
        self.images.iter().filter(|i| i.error.is_some()).count()
    }
}

/// The tag `image`'s policy selects from its registry, and the counts of the listing.
///
/// # Errors
/// The registry could not be listed; see [`RegistryError`].
pub async fn select(image: &Image) -> Result<(Option<String>, TagCounts), RegistryError> {
    let mut selector = Selector::new(&image.policy).map_err(|reason| RegistryError::Invalid {
        host: String::new(),
        repository: image.repository.clone(),
        reason,
    })?;
    let mut registry = Registry::new(&image.repository, &RegistryOptions::of(image))?;
    registry.tags(&mut |t| selector.offer(t)).await?;
    Ok((selector.best().map(str::to_string), selector.counts))
}

/// Scans the images of `stack` (read from `dir`) whose names `only` holds (every image when
/// `None`), listing their registries at once.
///
/// # Errors
/// None: a registry's failure is that image's `error`.
pub async fn scan(stack: &Stack, dir: &Path, only: Option<&[String]>) -> ScanReport {
    let found = markers::scan(dir);
    let images: Vec<&Image> = stack
        .images
        .iter()
        .filter(|i| only.is_none_or(|o| o.contains(&i.name)))
        .collect();
    let selected = futures::future::join_all(images.iter().map(|i| select(i))).await;
    let images = images
        .into_iter()
        .zip(selected)
        .map(|(image, sel)| image_scan(image, &found, sel))
        .collect();
    ScanReport {
        stack: stack.name.clone(),
        images,
    }
}

fn image_scan(
    image: &Image,
    found: &Found,
    selected: Result<(Option<String>, TagCounts), RegistryError>,
) -> ImageScan {
    let (latest, tags, error) = match selected {
        Ok((latest, counts)) => (latest, counts, None),
        Err(e) => (None, TagCounts::default(), Some(ScanError::from(&e))),
    };
    let markers = found
        .markers
        .iter()
        .filter(|m| m.image == image.name)
        .map(|m| {
            let wanted = latest
                .as_deref()
                .map(|tag| m.wanted(image, tag))
                .filter(|w| *w != m.value);
            MarkerState {
                file: m.file.display().to_string(),
                line: m.line,
                form: m.form,
                current: m.value.clone(),
                wanted,
            }
        })
        .collect();
    ImageScan {
        image: image.name.clone(),
        repository: image.repository.clone(),
        policy: image.policy.describe(),
        latest,
        tags,
        error,
        markers,
    }
}
