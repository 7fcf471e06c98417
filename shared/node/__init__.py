"""Scripts that run on Batch nodes (the release task's uploader). Python standard library only: a node
has nothing else, and the files are shipped to it as they are in this folder."""
