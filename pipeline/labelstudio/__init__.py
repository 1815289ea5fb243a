"""Label Studio integration: a local server, a retrying client, and format conversion.

- ``server``: start / stop / status of a local Label Studio (its own venv,
  loopback only, offline settings, an API token kept in its data folder).
- ``client``: a connection to any Label Studio (URL and key from the
  environment or arguments) with retries on transient failures and errors
  that name their cause.
- ``convert``: brush RLE, rectangles and polygons <-> masks and COCO boxes,
  and the labeling config built from a run's categories.
"""
