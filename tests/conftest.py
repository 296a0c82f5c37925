import os

# Quiet TensorFlow's C++ start-up messages in test output; one thread per op keeps timings stable.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
