"""The Kaggle bundle: code and weights datasets, the offline notebook, the upload."""
