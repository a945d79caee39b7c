"""refinery.mixes"""
