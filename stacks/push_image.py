"""Pushes a tiny OCI image (a config blob, one layer) to a registry, as CI would: the demo's
stand-in for `docker push`. Usage: push_image.py HOST:PORT REPOSITORY TAG (plain HTTP)."""
import hashlib
import json
import sys
import urllib.request

host, repo, tag = sys.argv[1:4]
base = f"http://{host}/v2/{repo}"


def request(method, url, body=b"", ctype="application/octet-stream"):
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": ctype})
    return urllib.request.urlopen(req)


def blob(data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    loc = request("POST", f"{base}/blobs/uploads/").headers["Location"]
    if loc.startswith("/"):
        loc = f"http://{host}{loc}"
    request("PUT", f"{loc}{'&' if '?' in loc else '?'}digest={digest}", data)
    return digest, len(data)


config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"tag": tag}},
                     "rootfs": {"type": "layers", "diff_ids": []}}).encode()
layer = f"the web app, version {tag}".encode()
(c, cs), (l, ls) = blob(config), blob(layer)
manifest = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": cs},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l, "size": ls}],
}
request("PUT", f"{base}/manifests/{tag}", json.dumps(manifest).encode(),
        "application/vnd.oci.image.manifest.v1+json")
