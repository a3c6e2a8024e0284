"""What the copy engine tells a progress display (:class:`~ecr_mirror.copy.CopyProgress`) for the image
kinds of issue 13: a nested index's bytes count toward its entries' platforms, and a non-distributable
layer that is not copied is never part of the total. Real registries; a recorder stands in for the display.

The rule every test checks: per label, bytes planned less bytes settled (found there, mounted, left out)
equal the bytes moved, and in all they equal what the report says was uploaded, so a bar ends at 100 %.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict

import pytest

from ecr_mirror.copy import CopyProgress
from tests.integration.helpers import copier, ref
from tests.support import field as fl
from tests.support import images as im


class Recorder(CopyProgress):
    """Every call, summed per label (thread-safe), and the order labels were first named in."""

    def __init__(self) -> None:
        self.planned_bytes: Counter[str] = Counter()
        self.settled_bytes: Counter[str] = Counter()
        self.moved_bytes: Counter[str] = Counter()
        self.sent_forward: Counter[str] = Counter()  # positive moves only: bytes put on the wire, restarts included
        self.destinations: set[str] = set()
        self.order: list[str] = []
        self._lock = threading.Lock()

    def _seen(self, destination: str, label: str) -> None:
        self.destinations.add(destination)
        if label not in self.order:
            self.order.append(label)

    def planned(self, destination: str, label: str, size: int) -> None:
        with self._lock:
            self._seen(destination, label)
            self.planned_bytes[label] += size

    def moved(self, destination: str, label: str, n: int) -> None:
        with self._lock:
            self._seen(destination, label)
            self.moved_bytes[label] += n
            self.sent_forward[label] += max(n, 0)

    def settled(self, destination: str, label: str, size: int) -> None:
        with self._lock:
            self._seen(destination, label)
            self.settled_bytes[label] += size

    def remaining(self) -> dict[str, int]:
        """Per label: what the bar still expects (total less moved); 0 everywhere when the copy is done."""
        out: dict[str, int] = defaultdict(int)
        for label in self.order:
            out[label] = self.planned_bytes[label] - self.settled_bytes[label] - self.moved_bytes[label]
        return dict(out)

    @property
    def total(self) -> int:
        return sum(self.planned_bytes.values()) - sum(self.settled_bytes.values())


def blob_sizes(image: im.Image, *, foreign: bool) -> int:
    return sum(size for digest, size in image.blob_sizes.items() if foreign or digest not in image.foreign)


@pytest.fixture
def lenient(registry_factory):
    return lambda: registry_factory(manifest_urls_allow=list(fl.URLS_ALLOW_ANY))


def test_nested_index_entries_count_toward_their_platforms(registry_pair):
    src, dst = registry_pair
    tree = fl.nested_index(seed=31)  # [index(linux/amd64, linux/arm64/v8), linux/s390x]
    fl.push_tree(src, "nested/app", tree, tag="v1")
    inner, s390x = tree.entries
    progress = Recorder()
    with copier(progress=progress) as c:
        report = c.copy(ref(src.host, "nested/app:v1"), ref(dst.host, "app:v1"))
    assert report.digest == tree.digest
    assert set(progress.order) == {"linux/amd64", "linux/arm64/v8", "linux/s390x"}  # no "image" line for the inner index
    assert progress.order[0] == "linux/s390x"  # announced at once; the inner index's entries once it is read
    expected = {image.platform_string: blob_sizes(image, foreign=False) for image in [*inner.images, s390x]}
    assert dict(progress.moved_bytes) == expected
    assert progress.remaining() == dict.fromkeys(expected, 0)
    assert progress.total == report.bytes_copied == sum(expected.values())
    assert progress.destinations == {str(ref(dst.host, "app:v1"))}


def test_a_foreign_layer_left_out_is_not_in_the_total(lenient):
    src, dst = lenient(), lenient()
    index = fl.windows_manifest_list(seed=32)
    im.push_index(src, "win/app", index, "ltsc")
    windows, linux = index.image_for("windows/amd64"), index.image_for("linux/amd64")
    progress = Recorder()
    with copier(progress=progress) as c:
        report = c.copy(ref(src.host, "win/app:ltsc"), ref(dst.host, "app:ltsc"))
    assert report.nondistributable_skipped == 1
    label = next(lab for lab in progress.order if lab.startswith("windows/amd64"))
    assert progress.planned_bytes[label] == blob_sizes(windows, foreign=False)  # the foreign layer was never planned
    assert progress.planned_bytes["linux/amd64"] == blob_sizes(linux, foreign=False)
    assert set(progress.remaining().values()) == {0}
    assert progress.total == report.bytes_copied


@pytest.mark.parametrize("why", ["unreachable", "destination-refuses"])
def test_an_opted_in_foreign_layer_that_cannot_be_copied_leaves_the_total(lenient, registry_factory, proxy_factory, why):
    """Opted in, the layer is planned; where it cannot be copied it leaves the total again, and bytes sent
    for it before the destination refused them are taken back: the bar still ends at exactly 100 %."""
    cdn_front = proxy_factory(registry_factory())
    index = fl.windows_manifest_list(seed=33, foreign_urls=lambda digest: [f"{cdn_front.url}/v2/cdn/blobs/{digest}"])
    windows = index.image_for("windows/amd64")
    (foreign,) = windows.foreign
    if why == "destination-refuses":
        im.push_blob(cdn_front, "cdn", foreign, windows.layers[0].data)
    src, dst = lenient(), lenient()
    im.push_index(src, "win/app", index, "ltsc")
    dst_front = proxy_factory(dst)
    dst_front.add_fault("PUT", foreign.split(":")[1], "status", status=400, times=None)
    progress = Recorder()
    with copier(progress=progress) as c:
        report = c.copy(ref(src.host, "win/app:ltsc"), ref(dst_front.host, "app:ltsc"), allow_nondistributable=True)
    assert (report.nondistributable_copied, report.nondistributable_skipped) == (0, 1)
    label = next(lab for lab in progress.order if lab.startswith("windows/amd64"))
    assert progress.planned_bytes[label] == blob_sizes(windows, foreign=True)  # opted in: planned with the rest
    assert progress.settled_bytes[label] >= windows.blob_sizes[foreign]  # ... and taken out again
    if why == "destination-refuses":  # its bytes went on the wire before the refusal
        assert progress.sent_forward[label] >= blob_sizes(windows, foreign=True)
    assert set(progress.remaining().values()) == {0}
    assert progress.total == report.bytes_copied


def test_a_copy_that_fails_takes_what_it_did_not_move_out_of_the_total(registry_pair, proxy_factory):
    """``sync`` keeps one display over many copies, and copies again after ECR's NAME_UNKNOWN: a failed copy
    must not leave bytes in the total that nothing will ever move."""
    src, dst = registry_pair
    index = im.build_index([im.build_image(p, seed=34, layers=2, layer_size=50_000) for p in ("linux/amd64", "linux/arm64/v8")])
    im.push_index(src, "app", index, "v1")
    front = proxy_factory(src)
    broken = index.image_for("linux/arm64/v8").layers[1].digest
    front.add_fault("GET", broken.split(":")[1], "status", status=404, times=None)  # not temporary: the copy fails
    progress = Recorder()
    with copier(progress=progress) as c, pytest.raises(Exception, match="404"):
        c.copy(ref(front.host, "app:v1"), ref(dst.host, "app:v1"))
    assert sum(progress.planned_bytes.values()) == sum(blob_sizes(i, foreign=False) for i in index.images)
    assert set(progress.remaining().values()) == {0}  # planned = settled + moved, label by label
    assert progress.total == sum(progress.moved_bytes.values()) < sum(progress.planned_bytes.values())
