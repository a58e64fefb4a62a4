"""The data: the prepared format every stage reads (`prepared`, a leaf), the sources it is made
from (`sources`), and image folders, resident or streamed (`imagefolder`)."""
