"""Schedulers diffusers lacks: the SiT flow-matching paths (GVP, Linear) that DiMSUM trains on."""

from ssmgen.schedulers.flow_matching import FlowMatchingScheduler

__all__ = ["FlowMatchingScheduler"]
