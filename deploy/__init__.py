"""Build-time tooling: what is deployed (manifest), how it is packaged, checked and audited.

Never imported by a function: nothing here is packaged.
"""
