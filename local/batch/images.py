"""The images the emulator lists from GET /supportedimages: real, current Batch image references and node agent
SKUs (https://learn.microsoft.com/azure/batch/batch-linux-nodes, and `az batch pool supported-images list`).

Every node runs on the host whatever its pool names, so the list is what samples pick from, not a constraint."""

from __future__ import annotations


def _image(publisher: str, offer: str, sku: str, agent: str, os_type: str = "linux") -> dict:
    return {"nodeAgentSKUId": agent, "osType": os_type, "verificationType": "verified",
            "imageReference": {"publisher": publisher, "offer": offer, "sku": sku, "version": "latest"}}


SUPPORTED_IMAGES = [
    _image("canonical", "ubuntu-24_04-lts", "server", "batch.node.ubuntu 24.04"),
    _image("canonical", "0001-com-ubuntu-server-jammy", "22_04-lts", "batch.node.ubuntu 22.04"),
    _image("canonical", "0001-com-ubuntu-server-focal", "20_04-lts", "batch.node.ubuntu 20.04"),
    _image("almalinux", "almalinux-x86_64", "9-gen2", "batch.node.el 9"),
    _image("debian", "debian-12", "12", "batch.node.debian 12"),
    _image("microsoftwindowsserver", "windowsserver", "2022-datacenter", "batch.node.windows amd64", "windows"),
    _image("microsoftwindowsserver", "windowsserver", "2019-datacenter", "batch.node.windows amd64", "windows"),
]
