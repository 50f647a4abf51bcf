"""courthub-sample-agency: a minimal court-hub agency plugin (see ``plugin.py``)."""

from courthub_sample_agency.plugin import SampleAgencyPlugin, SampleBank, serve

__all__ = ["SampleAgencyPlugin", "SampleBank", "serve"]
