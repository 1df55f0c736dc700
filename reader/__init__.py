"""sukumo-reader: the card-reader terminal daemon of the Sukumo City ID service."""

__version__ = "0.1.0"
