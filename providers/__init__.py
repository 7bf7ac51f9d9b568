"""Adapters to the outside world: cloud offerings (``cloud``) and grid carbon intensity (``grid``)."""
