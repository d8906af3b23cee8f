"""Thin Nipype adapters around bidsqc's plain functions.

Every interface passes a ``info`` dict down the branch. A failure is caught, written
into ``info['error']`` as one line (``stage: message``) and later interfaces pass it
through untouched, so one broken scan becomes an ``error`` row and never stops the
other branches.
"""
